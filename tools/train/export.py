#!/usr/bin/python3
"""Checkpoint of train.py -> Hugging Face directory.

usage: export.py CKPT.pt VOCAB.json OUT_DIR [--bf16]"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import hf_export  # noqa: E402
from model import Config, Gemma4  # noqa: E402


def load(path):
    ck = torch.load(path)
    model = Gemma4(Config(**ck["config"]))
    model.load_state_dict(ck["model"])
    model.eval()
    return model, ck.get("step")


def main():
    model, step = load(sys.argv[1])
    v = json.load(open(sys.argv[2]))
    hf_export.export(model, sys.argv[3], v["vocab"], v["merges"], bpe.SPECIAL,
                     "BF16" if "--bf16" in sys.argv else "F32")
    print(f"exported step {step} to {sys.argv[3]}")


if __name__ == "__main__":
    main()
