#!/usr/bin/python3
"""King James Bible text for training and held-out evaluation.

Source: Debian's bible-kjv-text (the compressed KJV, 1611 text, public
domain) read with the `bible` program of Debian's bible-kjv package.  Being
public domain, the text and any weights trained on it may be redistributed.

Layout of the written text: per chapter a heading line ("Genesis 1"), then
one verse per line without its verse number, then an empty line.  Every 20th
chapter (chapter index 19, 39, ... in canonical order) is held out; the rest
is training text.  Spaces are normalised to single spaces so that the BPE
pieces never hold a space anywhere but at their start (see bpe.py).

usage: corpus.py OUT_DIR      writes OUT_DIR/train.txt and OUT_DIR/heldout.txt
"""
import os
import re
import subprocess
import sys

HELD_OUT_EVERY = 20


def read_chapters():
    # -l with a huge width: one verse per output line, no wrapping
    raw = subprocess.run(["bible", "-l100000", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                         text=True).stdout
    chapters, cur = [], None
    for line in raw.split("\n"):
        if not line.strip():
            continue
        m = re.match(r"^\s+\d+ (.*)$", line)
        if m:  # a verse: drop its number
            cur[1].append(re.sub(r"\s+", " ", m.group(1)).strip())
        else:  # "Genesis 1": a new chapter
            cur = (re.sub(r"\s+", " ", line).strip(), [])
            chapters.append(cur)
    return chapters


def render(chs):
    return "".join(head + "\n" + "\n".join(verses) + "\n\n" for head, verses in chs)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    chs = read_chapters()
    assert len(chs) == 1189, len(chs)  # the Protestant canon's chapter count
    train = [c for i, c in enumerate(chs) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    held = [c for i, c in enumerate(chs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    with open(os.path.join(out, "train.txt"), "w") as f:
        f.write(render(train))
    with open(os.path.join(out, "heldout.txt"), "w") as f:
        f.write(render(held))
    print(f"{len(train)} training chapters, {len(held)} held out")


if __name__ == "__main__":
    main()
