#!/usr/bin/python3
"""A Gemma 4 style BPE vocabulary trained on our corpus, and its encoder.

Style (docs/architecture.md §5): spaces are written as U+2581, there is no
pre-tokenizer except the newline split (runs of "\\n" are their own tokens),
byte fallback tokens <0x00>..<0xFF> cover any character outside the
vocabulary, digits stay single characters (no merge touches a digit, as in
Gemma's vocabulary), and the control tokens of the chat format are present.

Training counts "chunks": a run of non-space characters with the one U+2581
before it.  As the corpus has single spaces only, a merge learned inside
chunks can never apply across two chunks (the right one starts with U+2581,
which only ever ends up at a piece's start), so encoding chunk by chunk
equals encoding a whole line, which is what the engine and llama.cpp do.
train.py checks that against `gemma4 tokenize` anyway.

usage: bpe.py TRAIN.txt OUT.json [VOCAB_SIZE]   writes the vocabulary as JSON
"""
import json
import re
import sys
from collections import Counter, defaultdict

SPACE = "\u2581"

# Ids below follow Gemma 4's order where it has one (pad eos bos unk mask),
# then the chat and tool markers, the multimodal markers our chat code knows,
# newline runs and tab, the 256 byte tokens, and the learned pieces.
SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>",
           "<|turn>", "<turn|>", "<|think|>", "<|channel>", "<channel|>",
           "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", '<|"|>',
           "<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>", "<|video|>"]
PLAIN_FIXED = ["\n", "\n\n", "\n\n\n", "\n\n\n\n", "\t"]
BYTES = ["<0x%02X>" % b for b in range(256)]


def chunks_of(text):
    """The training chunks of a line (spaces already replaced)."""
    return re.findall(SPACE + "?[^" + SPACE + "]+|" + SPACE + "+", text)


def train(text, vocab_size):
    counts = Counter()
    for line in text.split("\n"):
        counts.update(chunks_of(line.replace(" ", SPACE)))
    chars = sorted({c for w in counts for c in w})
    base = SPECIAL + PLAIN_FIXED + BYTES
    vocab = base + [c for c in chars if c not in base]
    words = [list(w) for w in counts]
    freq = [counts[w] for w in counts]
    pair_count = Counter()
    where = defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += freq[i]
            where[(a, b)].add(i)

    def mergeable(p):
        return not any(ch.isdigit() for ch in p[0] + p[1])

    merges = []
    while len(vocab) < vocab_size:
        best, best_n = None, 0
        for p, n in pair_count.items():
            # ties broken by the pair's text, so the result is deterministic
            if n > best_n or (n == best_n and best is not None and p < best):
                if mergeable(p):
                    best, best_n = p, n
        if best is None or best_n < 2:
            break
        a, b = best
        merges.append(best)
        vocab.append(a + b)
        for i in list(where[best]):
            w = words[i]
            for x, y in zip(w, w[1:]):
                pair_count[(x, y)] -= freq[i]
                if pair_count[(x, y)] <= 0:
                    del pair_count[(x, y)]
            j, nw = 0, []
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(a + b)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            words[i] = nw
            for x, y in zip(nw, nw[1:]):
                pair_count[(x, y)] += freq[i]
                where[(x, y)].add(i)
    return vocab, merges


class Encoder:
    """Text -> ids exactly as the engine's tokenizer does for our vocabulary
    (no special-token parsing: the corpus has no markers)."""

    def __init__(self, vocab, merges):
        self.ids = {t: i for i, t in enumerate(vocab)}
        self.rank = {(a, b): r for r, (a, b) in enumerate(merges)}
        self.cache = {}

    def bpe(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        sym = list(piece)
        while len(sym) > 1:
            best, at = None, -1
            for j in range(len(sym) - 1):
                r = self.rank.get((sym[j], sym[j + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, j
            if best is None:
                break
            sym[at:at + 2] = [sym[at] + sym[at + 1]]
        out = []
        for s in sym:
            if s in self.ids:
                out.append(self.ids[s])
            else:  # byte fallback
                out.extend(self.ids["<0x%02X>" % b] for b in s.encode("utf-8"))
        self.cache[piece] = out
        return out

    def encode(self, text, bos=True):
        out = [self.ids["<bos>"]] if bos else []
        for run in re.findall(r"\n+|[^\n]+", text):
            if run[0] == "\n":
                if run in self.ids:
                    out.append(self.ids[run])
                else:
                    out.extend(self.bpe(run))
                continue
            for c in chunks_of(run.replace(" ", SPACE)):
                out.extend(self.bpe(c))
        return out


def main():
    text = open(sys.argv[1]).read()
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 4096
    vocab, merges = train(text, size)
    with open(sys.argv[2], "w") as f:
        json.dump({"vocab": vocab, "merges": [a + " " + b for a, b in merges]}, f, ensure_ascii=False)
    print(f"{len(vocab)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
