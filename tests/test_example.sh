#!/bin/sh
# examples/simple.c, the embedding example, runs on a model the test writes:
# it prints the number of tokens asked for, the same text on every run (the
# model's sampling seed), text that is the detokenized generation, and a
# missing file is one line and a non-zero exit.
# Usage: sh tests/test_example.sh [BUILD]  (default: the directory of
# $GEMMA4_BIN, else build). Prints "test_example: N passed, M failed" last.
BUILD=${1:-$(dirname "${GEMMA4_BIN:-build/gemma4}")}
BIN=$BUILD/gemma4
EX=$BUILD/examples/simple
T=$(mktemp -d /tmp/gemma4-example-test.XXXXXX) || exit 1
M=$T/simple.gguf
passed=0; failed=0
check() { # check NAME EXIT-STATUS
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL test_example: $1" >&2; fi
}
finish() {
    rm -rf "$T"
    echo "test_example: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
[ -x "$EX" ]; check "$EX is built" $?
"$BIN" mkmodel --preset tiny-e2b -o "$M" > /dev/null 2>&1; check "mkmodel writes the model" $?
[ -x "$EX" ] && [ -f "$M" ] || finish

"$EX" "$M" "Once upon a time" 12 > "$T/out1" 2> "$T/err1"
check "simple exits 0 ($(tail -n 1 "$T/err1"))" $?
[ "$(tail -n 1 "$T/err1")" = "12 tokens" ]; check "simple generates the 12 tokens asked for: $(tail -n 1 "$T/err1")" $?
[ -s "$T/out1" ]; check "simple prints their text ($(wc -c < "$T/out1") bytes)" $?
"$EX" "$M" "Once upon a time" 12 > "$T/out2" 2> /dev/null
cmp -s "$T/out1" "$T/out2"; check "the same text on a second run" $?
# the text is the generated tokens' pieces: tokenizing it back gives 12
# tokens or fewer (the tokenizer may merge pieces), never none
n=$("$BIN" tokenize -m "$M" --no-bos "$(cat "$T/out1")" 2> /dev/null | wc -l)
[ "$n" -ge 1 ] && [ "$n" -le 12 ]; check "the text tokenizes back to 1..12 tokens ($n)" $?
"$EX" "$M" "Once upon a time" 0 > "$T/out0" 2> "$T/err0"
[ ! -s "$T/out0" ] && [ "$(tail -n 1 "$T/err0")" = "0 tokens" ]; check "N = 0 generates nothing" $?

"$EX" "$T/missing.gguf" "hi" > "$T/out3" 2> "$T/err3"
rc=$?; [ "$rc" -ne 0 ]; check "a missing model exits non-zero ($rc)" $?
[ "$(wc -l < "$T/err3")" -eq 1 ] && grep -q "^$T/missing.gguf: " "$T/err3"
check "with one line naming the file: $(cat "$T/err3")" $?
"$EX" > /dev/null 2> "$T/err4"
rc=$?; [ "$rc" -eq 2 ] && grep -q "^usage: " "$T/err4"; check "no arguments: usage and exit 2 ($rc)" $?
finish
