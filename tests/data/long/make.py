#!/usr/bin/env python3
"""Remakes the long reference sequences of this folder (see README.md).

For each sequence: writes the model with our `gemma4 mkmodel` (the arguments
below, recorded in the sidecar so tests/test_long.c can write the same file
again), draws the tokens, runs the real llama.cpp through
`llamacpp-bench logits` on all of them in one batch, and keeps only the rows
listed in ROWS, as NAME.rows.f32 plus the sidecar NAME.json.

    python3 tests/data/long/make.py [--bin build/gemma4]
        [--bench PATH_TO_LLAMACPP_BENCH] [--tmp DIR] [NAME...]

Standard library only. Takes about a minute: llama.cpp needs a few seconds
per sequence; writing the MoE model is the slowest part.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile

N_TOKENS = 1500
N_VOCAB = 512

# Real widths (n_embd, head dims, sliding window, expert count) and few,
# narrow everything else: our F32 matmuls are scalar double-accumulating
# dot products, so every million weights per token costs the test about a
# second per 1,500 positions.
E2B = ["--preset", "e2b", "--seed", "1501",
       "--set", "layer_types=SSFSF", "--set", "n_kv_shared=2", "--set", "vocab_size=512",
       "--set", "n_head=1", "--set", "n_ff=32", "--set", "n_embd_per_layer=32"]
MOE = ["--preset", "26b-a4b", "--seed", "1502",
       "--set", "layer_types=SF", "--set", "vocab_size=512", "--set", "n_head=1",
       "--set", "n_head_kv_swa=1", "--set", "n_head_kv_full=1", "--set", "n_ff=32",
       "--set", "n_ff_exp=16"]

# name -> (mkmodel arguments, weight type, token seed)
SEQUENCES = {
    "e2b_f32": (E2B, "f32", 1501),
    "e2b_q8_0": (E2B, "q8_0", 1501),
    "moe_f32": (MOE, "f32", 1502),
    "moe_q8_0": (MOE, "q8_0", 1502),
}


def rows_kept():
    """Every 20th position, and each window edge with its neighbours: e2b's
    sliding window is 512, 26B-A4B's 1024; 1024 is also where a position
    wrapped to 10 bits would show; the first positions and the last."""
    rows = set(range(0, N_TOKENS, 20))
    for edge in (1, 8, 256, 512, 1024, N_TOKENS - 1):
        rows.update(p for p in range(edge - 2, edge + 3) if 0 <= p < N_TOKENS)
    return sorted(rows)


def tokens(seed):
    """BOS (2), then ids drawn uniformly from the whole vocabulary, as the
    short fixtures do."""
    r = random.Random(seed)
    return [2] + [r.randrange(N_VOCAB) for _ in range(N_TOKENS - 1)]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make(name, args, here, tmp):
    mk_args, wtype, tok_seed = SEQUENCES[name]
    model = os.path.join(tmp, name + ".gguf")
    subprocess.run([args.bin, "mkmodel"] + mk_args + ["--type", wtype, "-o", model], check=True,
                   stdout=subprocess.DEVNULL)
    ids = tokens(tok_seed)
    tok_file = os.path.join(tmp, name + ".tokens")
    with open(tok_file, "w") as f:
        f.write(" ".join(map(str, ids)) + "\n")
    out = os.path.join(tmp, name + ".logits.f32")
    run = subprocess.run([args.bench, "logits", model, tok_file, out, "--threads", "1"], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info = json.loads(run.stdout.strip().splitlines()[-1])
    assert info["n_vocab"] == N_VOCAB and info["n_tokens"] == N_TOKENS and info["n_nonfinite"] == 0, info
    with open(out, "rb") as f:
        logits = f.read()
    assert len(logits) == N_TOKENS * N_VOCAB * 4
    rows = rows_kept()
    row_bytes = N_VOCAB * 4
    kept = b"".join(logits[r * row_bytes:(r + 1) * row_bytes] for r in rows)
    with open(os.path.join(here, name + ".rows.f32"), "wb") as f:
        f.write(kept)
    sets = [mk_args[i + 1] for i in range(len(mk_args)) if mk_args[i] == "--set"]
    sidecar = {
        "format": {"file": name + ".rows.f32", "dtype": "float32", "byte_order": "little",
                   "shape": [len(rows), N_VOCAB], "order": "row-major",
                   "row_meaning": "row k = llama.cpp's logits at position rows[k], i.e. after "
                                  "feeding tokens[0..rows[k]]"},
        "mkmodel": {"preset": mk_args[1], "type": wtype, "seed": int(mk_args[3]), "set": sets},
        "command": "gemma4 mkmodel " + " ".join(mk_args + ["--type", wtype, "-o", name + ".gguf"]),
        "model_sha256": sha256(model),
        "tokens_from": "BOS 2, then Python random.Random(%d).randrange(%d) for each of %d ids"
                       % (tok_seed, N_VOCAB, N_TOKENS - 1),
        "n_tokens": N_TOKENS,
        "n_vocab": N_VOCAB,
        "rows": rows,
        "tokens": ids,
        "all_logits_sha256": hashlib.sha256(logits).hexdigest(),
        "llama_cpp": {"node_llama_cpp_version": "3.22.1", "llama_cpp_release": "v0.5.0",
                      "llama_cpp_bundle_commit": "de3ff815ea7d559ee917f063901b8986f038abc6",
                      "driver": "llamacpp-bench logits MODEL TOKENS OUT --threads 1 "
                                "(one llama_decode of every token, logits on every position)"},
        "settings": info["settings"],
        "backend": {"file": info["backend_file"], "backends": info["backends"],
                    "system_info": info["system_info"]},
        "model_desc": info["model_desc"],
    }
    # one member per line, each array of numbers on its line
    text = "{\n" + ",\n".join(" %s: %s" % (json.dumps(k), json.dumps(v)) for k, v in sidecar.items()) + "\n}\n"
    with open(os.path.join(here, name + ".json"), "w") as f:
        f.write(text)
    print("%s: %d rows of %d positions kept" % (name, len(rows), N_TOKENS))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default=os.path.join(root, "build", "gemma4"))
    p.add_argument("--bench", default=os.environ.get("LLAMACPP_BENCH"), required="LLAMACPP_BENCH" not in os.environ)
    p.add_argument("--tmp", default=None, help="where the models are written (default: a temporary folder)")
    p.add_argument("names", nargs="*", default=sorted(SEQUENCES))
    args = p.parse_args()
    for name in args.names:
        if name not in SEQUENCES:
            sys.exit("unknown sequence %s (known: %s)" % (name, " ".join(sorted(SEQUENCES))))
    if args.tmp:
        os.makedirs(args.tmp, exist_ok=True)
        for name in args.names:
            make(name, args, here, args.tmp)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.names:
                make(name, args, here, tmp)


if __name__ == "__main__":
    main()
