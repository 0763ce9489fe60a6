#!/bin/sh
# Seeds the GGUF fuzzer in directory DIR: the three small model shapes in
# the four weight types, written here by `gemma4 mkmodel` (tests/data holds
# no models), cut to their first 64 KiB (the whole header plus some tensor
# data) and to the header alone (up to the data section `gemma4 dump`
# reports), plus the vocabulary-only file, which is small and valid as it is.
# Usage: sh tests/seed_fuzz_gguf.sh DIR  (GEMMA4_BIN: default build/gemma4)
dir=${1:?usage: seed_fuzz_gguf.sh DIR}
bin=${GEMMA4_BIN:-build/gemma4}
data=$(dirname "$0")/data
mkdir -p "$dir"
cp "$data/tokenizer/synthetic-vocab.gguf" "$dir/synthetic-vocab.gguf" || exit 1
[ -x "$bin" ] || { echo "seed_fuzz_gguf: $bin is not built (make $bin)" >&2; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
for shape in e2b moe dense; do
    for type in f32 q8_0 q4_0 q4_k; do
        m=$tmp/${shape}_$type.gguf
        "$bin" mkmodel --preset "tiny-$shape" --type "$type" -o "$m" > /dev/null || exit 1
        head -c 65536 "$m" > "$dir/${shape}_$type.64k"
        off=$("$bin" dump "$m" | sed -n '1s/.*data section at \([0-9]*\)$/\1/p')
        [ -n "$off" ] || { echo "seed_fuzz_gguf: gemma4 dump $m gave no data offset" >&2; exit 1; }
        head -c "$off" "$m" > "$dir/${shape}_$type.header"
    done
done
