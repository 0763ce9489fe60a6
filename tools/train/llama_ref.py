#!/usr/bin/python3
"""Reference data from the real llama.cpp for tests/test_trained.c: logits
of a few short sequences, greedy continuations, and the perplexity and KL
divergence of a held-out sample, all computed from llama.cpp's logits
(the llamacpp-bench driver's `logits` command), never from our engine.

usage: llama_ref.py VOCAB.json HELDOUT.txt OUT_DIR NAME=MODEL.gguf ...
  The first NAME is the base of the KL divergence (the most precise file).
Writes OUT_DIR/NAME.logits.f32 ([n_tokens][n_vocab] per sequence, sequences
back to back), OUT_DIR/heldout-sample.txt and OUT_DIR/reference.json.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402

# llama.cpp through the llamacpp-bench driver (node-llama-cpp 3.22.1); give its path in LLAMACPP_BENCH
BENCH = os.environ.get("LLAMACPP_BENCH", "llamacpp-bench")
SETTINGS = ["--threads", "1", "--kv", "f32", "--fa", "off"]  # the fixtures' parity settings

PROMPTS = ["In the beginning God created the heaven and the earth.",
           "And Jesus answered and said unto them,",
           "The LORD is my shepherd; I shall not want."]
GREEDY_PROMPTS = ["In the beginning", "And the LORD spake unto Moses, saying,", "Blessed are the"]
N_GREEDY = 24
PPL_CTX = 128
PPL_CHUNKS = 6


def llama_logits(model, ids, tmp):
    path = os.path.join(tmp, "ll.f32")
    r = subprocess.run([BENCH, "logits", model, ",".join(map(str, ids)), path] + SETTINGS, capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    info = json.loads(r.stdout.strip().splitlines()[-1])
    return np.fromfile(path, dtype=np.float32).reshape(len(ids), -1), info


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def main():
    vocab_path, held_path, out = sys.argv[1:4]
    models = [a.split("=", 1) for a in sys.argv[4:]]
    os.makedirs(out, exist_ok=True)
    tmp = "/tmp/llama_ref"
    os.makedirs(tmp, exist_ok=True)
    v = json.load(open(vocab_path))
    enc = bpe.Encoder(v["vocab"], [tuple(m.split(" ", 1)) for m in v["merges"]])
    bos = enc.ids["<bos>"]

    # held-out sample: whole lines until PPL_CHUNKS chunks are covered
    lines, sample = open(held_path).read().split("\n"), ""
    for ln in lines:
        sample += ln + "\n"
        if len(enc.encode(sample)) > PPL_CTX * PPL_CHUNKS + 20:
            break
    with open(os.path.join(out, "heldout-sample.txt"), "w") as f:
        f.write(sample)
    toks = enc.encode(sample)  # BOS first, as llama-perplexity tokenizes
    n_chunk = len(toks) // PPL_CTX
    first = PPL_CTX // 2

    ref = {"llama.cpp": None, "settings": SETTINGS, "sequences": [], "greedy": [],
           "perplexity": {"text": "heldout-sample.txt", "n_ctx": PPL_CTX, "n_chunk": n_chunk,
                          "scored_per_chunk": PPL_CTX - first - 1, "models": {}}}
    seqs = [enc.encode(p) for p in PROMPTS]
    ref["sequences"] = [{"text": p, "tokens": s} for p, s in zip(PROMPTS, seqs)]
    base_lp = None
    for name, model in models:
        # 1. logits of the short sequences
        blobs = []
        for s in seqs:
            lg, info = llama_logits(model, s, tmp)
            ref["llama.cpp"] = info["model_desc"] and "node-llama-cpp 3.22.1 (llama.cpp v0.5.0 build), " + info["backend_file"]
            blobs.append(lg)
        np.concatenate(blobs).astype(np.float32).tofile(os.path.join(out, f"{name}.logits.f32"))
        # 2. greedy continuations, one llama.cpp run per step on the whole prefix
        for p in GREEDY_PROMPTS:
            ids = enc.encode(p)
            n0, margins = len(ids), []
            for _ in range(N_GREEDY):
                lg, _ = llama_logits(model, ids, tmp)
                last = lg[-1]
                top2 = np.sort(last)[-2:]
                margins.append(float(top2[1] - top2[0]))
                ids.append(int(last.argmax()))
            ref["greedy"].append({"model": name, "prompt": p, "prompt_tokens": ids[:n0], "tokens": ids[n0:],
                                  "min_top2_margin": min(margins)})
        # 3. perplexity of the held-out sample, llama-perplexity's way
        nll, nll2, count, lps = 0.0, 0.0, 0, []
        for c in range(n_chunk):
            chunk = list(toks[c * PPL_CTX:(c + 1) * PPL_CTX])
            chunk[0] = bos
            lg, _ = llama_logits(model, chunk, tmp)
            lp = log_softmax(lg[first:PPL_CTX - 1])
            lps.append(lp)
            tgt = np.array(toks[c * PPL_CTX + first + 1:(c + 1) * PPL_CTX])
            x = lp[np.arange(len(tgt)), tgt]
            nll -= x.sum()
            nll2 += (x * x).sum()
            count += len(tgt)
        mean = nll / count
        ppl = math.exp(mean)
        err = math.sqrt((nll2 / count - mean * mean) / (count - 1)) * ppl
        entry = {"ppl": ppl, "ppl_err": err, "n_scored": count}
        lp = np.concatenate(lps)
        if base_lp is None:
            base_lp, base_name = lp, name
        else:
            kld = (np.exp(base_lp) * (base_lp - lp)).sum(-1)
            entry.update({"kld_base": base_name, "kld_mean": float(kld.mean()), "kld_p99": float(np.percentile(kld, 99)),
                          "kld_max": float(kld.max()),
                          "same_top": float(np.mean(base_lp.argmax(-1) == lp.argmax(-1)))})
        ref["perplexity"]["models"][name] = entry
        print(name, entry, flush=True)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)


if __name__ == "__main__":
    main()
