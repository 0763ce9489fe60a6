#!/usr/bin/python3
"""Exactness check: the PyTorch model's logits against `gemma4 logits` on
the GGUF converted from its exported checkpoint.

usage: check.py GEMMA4_BIN VOCAB.json WORKDIR [CHECKPOINT.pt | PRESET]
  without a checkpoint an untrained model of train.py's PRESET (default
  base; seed 0, weights perturbed so that norms and layer scalars are not
  all 1) is checked."""
import json
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import hf_export  # noqa: E402
import model as model_py  # noqa: E402
from model import Config, Gemma4  # noqa: E402


def main():
    gemma4, vocab_path, work = sys.argv[1:4]
    v = json.load(open(vocab_path))
    torch.manual_seed(0)
    if len(sys.argv) > 4 and sys.argv[4].endswith(".pt"):
        ck = torch.load(sys.argv[4])
        model = Gemma4(Config(**ck["config"]))
        model.load_state_dict(ck["model"])
    else:
        from train import PRESETS
        model = Gemma4(Config(**PRESETS[sys.argv[4] if len(sys.argv) > 4 else "base"]))
        with torch.no_grad():  # make every tensor matter: no weight may be a no-op 1
            for n, p in model.named_parameters():
                if p.dim() == 1:
                    p.mul_(1 + 0.2 * torch.randn_like(p))
                else:
                    p.mul_(3.0)
    model.eval()
    model_py.GELU_FP16_TABLE = os.environ.get("GELU_TABLE", "1") == "1"
    hf = os.path.join(work, "hf")
    hf_export.export(model, hf, v["vocab"], v["merges"], bpe.SPECIAL)
    gguf = os.path.join(work, "f32.gguf")
    subprocess.run([gemma4, "convert", hf, "-o", gguf, "--type", "f32"], check=True)
    enc = bpe.Encoder(v["vocab"], [tuple(m.split(" ", 1)) for m in v["merges"]])
    text = open(os.path.join(os.path.dirname(vocab_path), "heldout.txt")).read()[:3000]
    ids = enc.encode(text)[:200]
    # the engine's tokenizer must give the same ids
    got = subprocess.run([gemma4, "tokenize", "-m", gguf, "--json", text[:600]], check=True, capture_output=True,
                         text=True).stdout
    ours = enc.encode(text[:600])
    print("tokenizer agrees:", json.loads(got) == ours)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).numpy()[0]
    out = os.path.join(work, "logits.bin")
    subprocess.run([gemma4, "logits", "-m", gguf, "--tokens", ",".join(map(str, ids)), "-o", out], check=True)
    eng = np.fromfile(out, dtype=np.float32).reshape(len(ids), -1)
    d = np.abs(eng - ref)
    print(f"{len(ids)} tokens: max |diff| {d.max():.3g}, mean {d.mean():.3g}, logit std {ref.std():.3g}, "
          f"argmax agree {np.mean(eng.argmax(-1) == ref.argmax(-1)):.4f}")


if __name__ == "__main__":
    main()
