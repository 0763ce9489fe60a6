#!/usr/bin/python3
"""The QAT table: the BF16 QAT checkpoint converted five ways, each measured
against the BF16 file with `gemma4 perplexity` (held-out perplexity, mean
KL divergence, top-1 agreement) and, for the Q4_0 files, the share of Q4_0
block bytes identical to the grid the checkpoint was trained on (= the
bytes of the `--qat` file, whose blocks convert reports 100% on-grid).

usage: qat_table.py GEMMA4_BIN QAT_HF_DIR HELDOUT.txt WORKDIR [-c N] [--chunks N]
"""
import os
import re
import struct
import subprocess
import sys

GGML_Q4_0 = 2
TYPE_SIZES = {0: 4, 1: 2, 30: 2}  # f32, f16, bf16 element sizes (others only skipped by offset)


def read_str(f):
    n, = struct.unpack("<Q", f.read(8))
    return f.read(n).decode()


def skip_value(f, t):
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    if t == 8:
        read_str(f)
    elif t == 9:
        et, n = struct.unpack("<IQ", f.read(12))
        for _ in range(n):
            skip_value(f, et)
    else:
        f.read(sizes[t])


def q4_0_blocks(path):
    """name -> bytes of every Q4_0 tensor of a GGUF file."""
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
        _, n_t, n_kv = struct.unpack("<IQQ", f.read(20))
        align = 32
        for _ in range(n_kv):
            k = read_str(f)
            t, = struct.unpack("<I", f.read(4))
            if k == "general.alignment":
                align, = struct.unpack("<I", f.read(4))
            else:
                skip_value(f, t)
        infos = []
        for _ in range(n_t):
            name = read_str(f)
            nd, = struct.unpack("<I", f.read(4))
            dims = struct.unpack("<%dQ" % nd, f.read(8 * nd))
            t, off = struct.unpack("<IQ", f.read(12))
            infos.append((name, dims, t, off))
        base = (f.tell() + align - 1) // align * align
        out = {}
        for name, dims, t, off in infos:
            if t != GGML_Q4_0:
                continue
            n = 1
            for d in dims:
                n *= d
            f.seek(base + off)
            out[name] = f.read(n // 32 * 18)
        return out


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(" ".join(cmd) + "\n" + r.stderr)
    return r.stdout + r.stderr


def main():
    g4, hf, text, work = sys.argv[1:5]
    extra = sys.argv[5:]
    os.makedirs(work, exist_ok=True)
    files = [("bf16", ["--type", "bf16"]), ("q4_0 --qat", ["--type", "q4_0", "--qat"]), ("q4_0 naive", ["--type", "q4_0"]),
             ("q4_k", ["--type", "q4_k"]), ("q8_0", ["--type", "q8_0"])]
    paths = {}
    for name, args in files:
        p = os.path.join(work, name.replace(" --", "-").replace(" ", "-") + ".gguf")
        run([g4, "convert", hf, "-o", p] + args)
        paths[name] = p
    base = os.path.join(work, "bf16.kld")
    out = run([g4, "perplexity", "-m", paths["bf16"], "-f", text, "--kl-divergence-base", base] + extra)
    rows = [("bf16", re.search(r"PPL = ([\d.]+) \+/- ([\d.]+)", out).groups(), None, None, None)]
    grid = q4_0_blocks(paths["q4_0 --qat"])
    for name, _ in files[1:]:
        out = run([g4, "perplexity", "-m", paths[name], "--kl-divergence-base", base, "--kl-divergence"] + extra)
        ppl = re.search(r"PPL = ([\d.]+) \+/- ([\d.]+)", out).groups()
        kld = re.search(r"Mean    KLD    :\s+([\d.]+) \+/- ([\d.]+)", out).groups()
        same = re.search(r"Same top p     :\s+([\d.]+) \+/- ([\d.]+)", out).groups()
        share = None
        if name.startswith("q4_0"):
            mine = q4_0_blocks(paths[name])
            same_b = tot = 0
            for k, v in grid.items():
                w = mine.get(k, b"")
                tot += len(v)
                same_b += sum(1 for x, y in zip(v, w) if x == y)
            share = 100.0 * same_b / tot
        rows.append((name, ppl, kld, same, share))
    size = {n: os.path.getsize(p) for n, p in paths.items()}
    print("| file | size | held-out PPL | mean KLD vs BF16 | top-1 agreement | Q4_0 bytes on the QAT grid |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, ppl, kld, same, share in rows:
        print(f"| {name} | {size[name] / 1e6:.1f} MB | {ppl[0]} ± {ppl[1]} | "
              + (f"{kld[0]} ± {kld[1]}" if kld else "-") + " | " + (f"{same[0]} ± {same[1]} %" if same else "-") + " | "
              + (f"{share:.2f} %" if share is not None else "-") + " |")


if __name__ == "__main__":
    main()
