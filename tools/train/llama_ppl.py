#!/usr/bin/python3
"""Held-out perplexity computed from the real llama.cpp's logits, the way
llama-perplexity computes it (chunks of N tokens from the BOS-prefixed
token stream, each chunk's first token replaced by BOS, second half scored),
to set beside `gemma4 perplexity` on the same file.

usage: llama_ppl.py VOCAB.json TEXT N_CTX MODEL.gguf..."""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
from llama_ref import llama_logits, log_softmax  # noqa: E402


def main():
    vocab_path, text, n_ctx = sys.argv[1], sys.argv[2], int(sys.argv[3])
    v = json.load(open(vocab_path))
    enc = bpe.Encoder(v["vocab"], [tuple(m.split(" ", 1)) for m in v["merges"]])
    toks = enc.encode(open(text).read())
    first = n_ctx // 2
    tmp = "/tmp/llama_ppl"
    os.makedirs(tmp, exist_ok=True)
    for model in sys.argv[4:]:
        nll = nll2 = 0.0
        count = 0
        for c in range(len(toks) // n_ctx):
            chunk = list(toks[c * n_ctx:(c + 1) * n_ctx])
            chunk[0] = enc.ids["<bos>"]
            lg, _ = llama_logits(model, chunk, tmp)
            lp = log_softmax(lg[first:n_ctx - 1])
            tgt = np.array(toks[c * n_ctx + first + 1:(c + 1) * n_ctx])
            x = lp[np.arange(len(tgt)), tgt]
            nll -= x.sum()
            nll2 += (x * x).sum()
            count += len(tgt)
        mean = nll / count
        ppl = math.exp(mean)
        err = math.sqrt((nll2 / count - mean * mean) / (count - 1)) * ppl
        print(f"{model}: llama.cpp-derived PPL = {ppl:.4f} +/- {err:.5f} ({count} tokens, -c {n_ctx})", flush=True)


if __name__ == "__main__":
    main()
