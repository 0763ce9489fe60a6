#!/usr/bin/python3
"""Quantisation-aware fine-tuning on Q4_0's grid, and the BF16 export.

Every matrix that `gemma4 convert --type q4_0` stores as Q4_0 (all 2-D
weights but the PLE model projection, which llama-quantize keeps in F16) is
fake-quantised in the forward pass: per group of 32 consecutive inputs
(a GGUF row's Q4_0 block), a BF16 scale s = amax / 7 and integer codes
k = clamp(round(w / s), -8, 7); the forward pass sees bf16(k * s), the
gradient passes straight through to the float weights.  The scale amax / 7
(symmetric, the largest magnitude on code +-7) is the usual QAT choice and
not ggml's max / -8: re-quantising such weights the naive way moves the
codes, which is the gotcha this measures.  The export writes exactly the
fake-quantised values in BF16, so every group sits on a grid `convert --qat`
can recover bit for bit.

usage: qat.py CKPT.pt DATA_DIR OUT_DIR [--steps N] [--lr LR] [--batch B]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torch.nn.utils.parametrize as P

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import hf_export  # noqa: E402
from export import load  # noqa: E402
from train import batches  # noqa: E402


def to_bf16(x):
    return x.to(torch.bfloat16).to(torch.float32)


def q4_grid(w):
    """bf16(k * s) for Q4_0 groups of 32 along the last axis, s = bf16(amax / 7)."""
    g = w.reshape(-1, 32)
    s = to_bf16(g.abs().amax(-1, keepdim=True) / 7.0)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    k = torch.clamp(torch.round(g / safe), -8, 7)
    return to_bf16(k * s).reshape(w.shape)


class FakeQ4(torch.nn.Module):
    def forward(self, w):
        return w + (q4_grid(w) - w).detach()  # straight-through estimator


def quantised_modules(model):
    """(module, attribute) pairs of the Q4_0 matrices."""
    out = [(model.embed_tokens, "weight")]
    if model.c.P:
        out.append((model.embed_tokens_per_layer, "weight"))
    for L in model.layers:
        for name in ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                     "per_layer_input_gate", "per_layer_projection"]:
            if hasattr(L, name):
                out.append((getattr(L, name), "weight"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=4321)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    rng = np.random.RandomState(a.seed)
    os.makedirs(a.out, exist_ok=True)
    model, step0 = load(a.ckpt)
    v = json.load(open(os.path.join(a.data, "vocab.json")))
    enc = bpe.Encoder(v["vocab"], [tuple(m.split(" ", 1)) for m in v["merges"]])
    stream = np.array(enc.encode(open(os.path.join(a.data, "train.txt")).read(), bos=False), dtype=np.int64)
    nl = {enc.ids[t] for t in bpe.PLAIN_FIXED[:4]}
    starts = np.array([i + 1 for i in range(len(stream) - 1) if stream[i] in nl], dtype=np.int64)
    for mod, attr in quantised_modules(model):
        P.register_parametrization(mod, attr, FakeQ4())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    gen = batches(stream, starts, rng, a.batch, model.c.n_ctx, enc.ids["<bos>"])
    log = open(os.path.join(a.out, "qat_loss.tsv"), "w")
    log.write("step\ttrain_loss\tseconds\n")
    t0, run = time.time(), None
    for step in range(a.steps):
        x = next(gen)
        lg = model(x[:, :-1])
        loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run = loss.item() if run is None else 0.9 * run + 0.1 * loss.item()
        if step % 10 == 0 or step == a.steps - 1:
            log.write(f"{step}\t{run:.4f}\t{time.time() - t0:.0f}\n")
            log.flush()
    # bake the grid into the weights, then export in BF16: bf16(k * s) is
    # already a BF16 value, so the export stores it unchanged
    model.eval()
    with torch.no_grad():
        for mod, attr in quantised_modules(model):
            P.remove_parametrizations(mod, attr, leave_parametrized=True)
    torch.save({"config": model.c.__dict__, "model": model.state_dict(), "step": f"{step0}+qat{a.steps}"},
               os.path.join(a.out, "ckpt.pt"))
    hf_export.export(model, os.path.join(a.out, "hf"), v["vocab"], v["merges"], bpe.SPECIAL, "BF16")
    print(f"QAT: {a.steps} steps in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
