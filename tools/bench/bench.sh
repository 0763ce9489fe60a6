#!/bin/sh
# What `make bench` runs: `gemma4 bench` on synthetic full-size E2B and
# 26B-A4B shaped models (Q4_0 and Q4_K) and, when LLAMACPP_BENCH names
# llama.cpp's bench tool, the same files at the same thread counts through llama.cpp, so the
# two tables can be read side by side. Builds nothing: ./gemma4 must exist.
# Missing models are written with `./gemma4 mkmodel` (the 26B-A4B ones are
# about 14 GB each).
#
# Environment (defaults in brackets):
#   BENCH_DIR       where the models live [/tmp/gemma4-bench]
#   BENCH_MODELS    which of e2b_q4_0 e2b_q4_k moe_q4_0 moe_q4_k to run [all four]
#   BENCH_THREADS   thread counts [1,2]
#   BENCH_ARGS      -p/-n/-r for the E2B models [-p 512 -n 128 -r 5]
#   BENCH_MOE_ARGS  the same for the 26B-A4B models [$BENCH_ARGS]
#   LLAMACPP_BENCH  llama.cpp's bench tool, run as "$LLAMACPP_BENCH bench FILE ARGS"
#                   [unset: the llama.cpp tables are left out, and the run says so]
#   LLAMACPP_ARGS   extra llama.cpp options, e.g. --cpu haswell [none]
set -eu

GEMMA4=./gemma4
BENCH_DIR=${BENCH_DIR:-/tmp/gemma4-bench}
BENCH_MODELS=${BENCH_MODELS:-e2b_q4_0 e2b_q4_k moe_q4_0 moe_q4_k}
BENCH_THREADS=${BENCH_THREADS:-1,2}
BENCH_ARGS=${BENCH_ARGS:--p 512 -n 128 -r 5}
BENCH_MOE_ARGS=${BENCH_MOE_ARGS:-$BENCH_ARGS}
LLAMACPP_ARGS=${LLAMACPP_ARGS:-}
LLAMACPP_BENCH=${LLAMACPP_BENCH:-}
if [ -z "$LLAMACPP_BENCH" ]; then
    echo "bench.sh: LLAMACPP_BENCH is not set: gemma4 tables only, no llama.cpp comparison" >&2
elif [ ! -x "$LLAMACPP_BENCH" ]; then
    echo "bench.sh: LLAMACPP_BENCH=$LLAMACPP_BENCH is not an executable" >&2; exit 2
fi

[ -x "$GEMMA4" ] || { echo "bench.sh: $GEMMA4 not built (run make)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"

for name in $BENCH_MODELS; do
    case $name in
        e2b_*) preset=e2b; args=$BENCH_ARGS ;;
        moe_*) preset=26b-a4b; args=$BENCH_MOE_ARGS ;;
        *) echo "bench.sh: unknown model '$name' (e2b_q4_0 e2b_q4_k moe_q4_0 moe_q4_k)" >&2; exit 2 ;;
    esac
    file=$BENCH_DIR/$name.gguf
    if [ ! -f "$file" ]; then
        echo "bench.sh: writing $file" >&2
        "$GEMMA4" mkmodel --preset "$preset" --type "${name#*_}" -o "$file"
    fi
    echo
    echo "## $name: gemma4"
    echo
    # shellcheck disable=SC2086 # the argument lists are meant to split
    "$GEMMA4" bench -m "$file" $args -t "$BENCH_THREADS"
    if [ -n "$LLAMACPP_BENCH" ]; then
        echo
        echo "## $name: llama.cpp"
        echo
        # shellcheck disable=SC2086
        "$LLAMACPP_BENCH" bench "$file" $args -t "$BENCH_THREADS" $LLAMACPP_ARGS
    fi
done
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
