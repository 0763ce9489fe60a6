#!/usr/bin/python3
"""Trains the small dense Gemma 4 (model.py) on the KJV training text, on CPU,
with fixed seeds, and writes a checkpoint plus the Hugging Face export.

usage: train.py DATA_DIR OUT_DIR [--steps N] [--batch B] [--lr LR] [--threads N] [--bench]
  DATA_DIR holds train.txt, heldout.txt (corpus.py) and vocab.json (bpe.py).
  Writes OUT_DIR/ckpt.pt (every --save-every steps and at the end),
  OUT_DIR/loss.tsv (step, train loss, held-out loss, tokens/s, seconds)
  and OUT_DIR/hf/ (the checkpoint `gemma4 convert` reads).

Sequences are <bos> followed by 256 tokens of the training stream, starting
at a random line start half of the time and anywhere otherwise (the engine
always prepends <bos>, so the model must be good right after it); the loss
is the mean next-token cross entropy over all 256 positions.  AdamW, weight
decay on matrices only, linear warm-up then cosine decay to a tenth.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import hf_export  # noqa: E402
from model import Config, Gemma4  # noqa: E402


# model.py's Config defaults are "small"; "base" is the shipped dense model.
PRESETS = {
    "small": {},
    "base": {"d": 256, "hd_swa": 64, "hd_full": 128, "n_ff": 512, "P": 64},
    # the 26B-A4B kind: 5 sliding + 1 full, no PLE, no KV sharing, full
    # layers with 1 KV head and V = K, an always-on MLP beside 8 experts (top 2)
    "moe": {"d": 128, "hd_swa": 32, "hd_full": 64, "n_ff": 256, "P": 0, "n_kv_shared": 0, "double_wide": False,
            "layer_types": ["sliding"] * 5 + ["full"], "n_head_kv_full": 1, "k_eq_v_full": True,
            "n_expert": 8, "n_expert_used": 2, "n_ff_exp": 128, "window": 128},
}


def batches(stream, starts, rng, B, T, bos):
    while True:
        x = np.empty((B, T + 1), dtype=np.int64)
        for b in range(B):
            if rng.rand() < 0.5:
                o = starts[rng.randint(len(starts))]
            else:
                o = rng.randint(len(stream) - T)
            o = min(o, len(stream) - T)
            x[b, 0] = bos
            x[b, 1:] = stream[o:o + T]
        yield torch.from_numpy(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--bench", action="store_true", help="time 5 steps and exit")
    ap.add_argument("--preset", default="base", choices=sorted(PRESETS))
    a = ap.parse_args()
    # one thread by default: with other jobs on the machine, OpenMP's
    # barriers between small element-wise ops made 2 threads ~10x slower
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.RandomState(a.seed)
    os.makedirs(a.out, exist_ok=True)

    v = json.load(open(os.path.join(a.data, "vocab.json")))
    enc = bpe.Encoder(v["vocab"], [tuple(m.split(" ", 1)) for m in v["merges"]])
    text = open(os.path.join(a.data, "train.txt")).read()
    stream = np.array(enc.encode(text, bos=False), dtype=np.int64)
    nl = {enc.ids[t] for t in bpe.PLAIN_FIXED[:4]}
    starts = np.array([i + 1 for i in range(len(stream) - 1) if stream[i] in nl], dtype=np.int64)
    held = np.array(enc.encode(open(os.path.join(a.data, "heldout.txt")).read(), bos=False), dtype=np.int64)
    c = Config(**PRESETS[a.preset])
    T = c.n_ctx
    bos = enc.ids["<bos>"]
    # fixed held-out batch: 8 windows spread over the held-out text
    hx = torch.from_numpy(np.stack([np.concatenate([[bos], held[o:o + T]])
                                    for o in np.linspace(0, len(held) - T - 1, 8).astype(np.int64)]))
    print(f"{len(stream)} training tokens, {len(held)} held-out tokens", flush=True)

    model = Gemma4(c)
    n_par = sum(p.numel() for p in model.parameters())
    print(f"{n_par} parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(s):
        if s < a.warmup:
            return a.lr * (s + 1) / a.warmup
        p = (s - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    def held_loss():
        model.eval()
        with torch.no_grad():
            lg = model(hx[:, :-1])
            loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), hx[:, 1:].reshape(-1)).item()
        model.train()
        return loss

    def save(step):
        torch.save({"config": c.__dict__, "model": model.state_dict(), "step": step}, os.path.join(a.out, "ckpt.pt"))

    log = open(os.path.join(a.out, "loss.tsv"), "a")
    if not a.bench:
        log.write("step\ttrain_loss\theldout_loss\ttok_per_s\tseconds\n")
    gen = batches(stream, starts, rng, a.batch, T, bos)
    t0 = time.time()
    tok_done, run_loss = 0, None
    steps = 5 if a.bench else a.steps
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = next(gen)
        lg = model(x[:, :-1])
        loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tok_done += a.batch * T
        run_loss = loss.item() if run_loss is None else 0.9 * run_loss + 0.1 * loss.item()
        el = time.time() - t0
        if a.bench:
            print(f"step {step} loss {loss.item():.3f} {tok_done / el:.0f} tok/s", flush=True)
            continue
        last = step == a.steps - 1
        if step % 10 == 0 or last:
            hl = held_loss() if (step % 100 == 0 or last) else float("nan")
            log.write(f"{step}\t{run_loss:.4f}\t{hl:.4f}\t{tok_done / el:.0f}\t{el:.0f}\n")
            log.flush()
        if (step + 1) % a.save_every == 0 or last:
            save(step + 1)
    if not a.bench:
        model.eval()
        hf_export.export(model, os.path.join(a.out, "hf"), v["vocab"], v["merges"], bpe.SPECIAL)
        print(f"done: {a.steps} steps in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
