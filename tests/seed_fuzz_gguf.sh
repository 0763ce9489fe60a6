#!/bin/sh
# Seeds the GGUF fuzzer: the first 64 KiB of each fixture model (this holds
# its whole header plus some tensor data) and the header alone, cut at the
# data section that `gemma4 dump` reports, plus the vocabulary-only file,
# which is small and valid as it is. Usage: sh tests/seed_fuzz_gguf.sh DIR
dir=${1:?usage: seed_fuzz_gguf.sh DIR}
fx=${GEMMA4_FIXTURES:-../shared/fixtures}
bin=${GEMMA4_BIN:-build/gemma4}
[ -x "$bin" ] || bin=./gemma4
mkdir -p "$dir"
for m in "$fx"/models/*.gguf; do
    [ -f "$m" ] || continue
    name=$(basename "$m" .gguf)
    head -c 65536 "$m" > "$dir/$name.64k"
    if [ -x "$bin" ]; then
        off=$("$bin" dump "$m" | sed -n '1s/.*data section at \([0-9]*\)$/\1/p')
        [ -n "$off" ] && head -c "$off" "$m" > "$dir/$name.header"
    fi
done
[ -x "$bin" ] || echo "seed_fuzz_gguf: no gemma4 binary, header-only seeds skipped (the 64 KiB seeds hold the headers)" >&2
cp "$fx/tokenizer/synthetic-vocab.gguf" "$dir/synthetic-vocab.gguf"
