#!/bin/sh
# The gemma4 command line as a user drives it: run, chat, tokenize,
# detokenize, info, bench and their error paths, on a small synthetic model
# written here. Usage: sh tests/test_cli.sh [BIN]
# Prints "test_cli: N passed, M failed" last.
BIN=${1:-${GEMMA4_BIN:-build/gemma4}}
T=$(mktemp -d /tmp/gemma4-cli-test.XXXXXX)
M=$T/tiny.gguf
passed=0; failed=0
check() { # check NAME COND-EXIT-STATUS
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL test_cli.sh: $1" >&2; fi
}
finish() {
    rm -rf "$T"
    echo "test_cli: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
"$BIN" mkmodel --preset tiny-e2b --type q8_0 -o "$M" > /dev/null 2>&1
check "mkmodel writes the test model" $?
[ -f "$M" ] || finish

# ---- run
"$BIN" run -m "$M" -p "Hello world" -n 5 --temp 0 > "$T/run1" 2> "$T/run1.err"
check "run exits 0" $?
grep -q "^generated: 5 tokens" "$T/run1.err"; check "run reports 5 generated tokens" $?
grep -q "^prompt: 10 tokens" "$T/run1.err"; check "run reports the 10 prompt tokens (BOS + 9)" $?
"$BIN" run -m "$M" -p "Hello world" -n 5 --temp 0 > "$T/run2" 2> /dev/null
cmp -s "$T/run1" "$T/run2"; check "greedy run is deterministic" $?
printf 'Hello world' | "$BIN" run -m "$M" -f - -n 5 --temp 0 > "$T/run3" 2> /dev/null
cmp -s "$T/run1" "$T/run3"; check "run -f - reads the prompt from standard input" $?
printf 'Hello world' > "$T/prompt.txt"
"$BIN" run -m "$M" -f "$T/prompt.txt" -n 5 --temp 0 > "$T/run4" 2> /dev/null
cmp -s "$T/run1" "$T/run4"; check "run -f FILE equals run -p" $?
"$BIN" run -m "$M" -p "Hello world" -n 5 --temp 0.8 --seed 3 > "$T/s1" 2> /dev/null
"$BIN" run -m "$M" -p "Hello world" -n 5 --temp 0.8 --seed 3 > "$T/s2" 2> /dev/null
cmp -s "$T/s1" "$T/s2"; check "sampling with a fixed seed repeats" $?
# llama.cpp's spellings: the same run, and GPU options accepted with a note
"$BIN" run --model "$M" --prompt "Hello world" --n-predict 5 --temp 0 --ctx-size 128 --threads 2 -ngl 99 -fa on \
    > "$T/run5" 2> "$T/run5.err"
check "run with llama.cpp's long options exits 0" $?
cmp -s "$T/run1" "$T/run5"; check "long options give the same text as the short ones" $?
grep -q -- "-ngl 99 ignored" "$T/run5.err"; check "-ngl is accepted and explained" $?
grep -q -- "-fa ignored" "$T/run5.err"; check "-fa on is accepted and explained" $?
"$BIN" run -m "$M" -p x --no-such-option > /dev/null 2> "$T/unknown.err"
rc=$?; [ "$rc" -eq 2 ]; check "an unknown option exits 2 (got $rc)" $?
[ "$(wc -l < "$T/unknown.err")" -eq 1 ] && grep -q "unknown option '--no-such-option'" "$T/unknown.err"
check "an unknown option gets one line, not the usage page" $?
# an endless input is cut at the documented limit, not read until memory runs out
timeout 60 "$BIN" run -m "$M" -f /dev/zero -n 1 > /dev/null 2> "$T/zero.err"
rc=$?; [ "$rc" -eq 1 ]; check "run -f /dev/zero exits 1 (got $rc)" $?
grep -q "/dev/zero: more than 64 MiB" "$T/zero.err"; check "run -f /dev/zero names the 64 MiB limit" $?
"$BIN" run -m "$T/missing.gguf" -p hi > /dev/null 2> "$T/missing.err"
rc=$?; [ "$rc" -ne 0 ]; check "run on a missing file fails (exit $rc)" $?
grep -q "$T/missing.gguf: cannot open" "$T/missing.err"; check "run names the missing file" $?

# ---- tokenize / detokenize
ids=$("$BIN" tokenize -m "$M" --no-bos "Hello world" | tr '\n' ' ')
[ -n "$ids" ]; check "tokenize prints ids" $?
# shellcheck disable=SC2086
text=$("$BIN" detokenize -m "$M" $ids)
[ "$text" = "Hello world" ]; check "detokenize(tokenize(text)) = text (got '$text')" $?
json=$("$BIN" tokenize -m "$M" --json "Hello")
plain=$("$BIN" tokenize -m "$M" "Hello" | tr '\n' ',' | sed 's/,$//')
[ "$json" = "[$plain]" ]; check "tokenize --json matches the plain ids ($json vs [$plain])" $?
first=$("$BIN" tokenize -m "$M" "x" | head -n 1)
[ "$first" = 2 ]; check "tokenize adds BOS (id 2) by default (got $first)" $?
timeout 60 "$BIN" tokenize -m "$M" --file /dev/zero > /dev/null 2> "$T/tz.err"
rc=$?; [ "$rc" -eq 1 ]; check "tokenize --file /dev/zero exits 1 (got $rc)" $?
grep -q "/dev/zero: more than 64 MiB" "$T/tz.err"; check "tokenize --file /dev/zero names the limit" $?

# ---- info: the tiny-e2b shape (5 layers, S S F S F, last two share KV)
"$BIN" info -m "$M" > "$T/info" 2>&1
check "info exits 0" $?
grep -q "n_embd 256, n_layer 5, n_head 4, n_vocab 512" "$T/info"; check "info gives the shape" $?
[ "$(grep -cE '^ +[0-9]+ (swa|full) ' "$T/info")" -eq 5 ]; check "info lists 5 layers" $?
grep -qE '^ +3 swa .* L1 ' "$T/info"; check "info: layer 3 reads layer 1's cache" $?
grep -qE '^ +4 full .* L2 ' "$T/info"; check "info: layer 4 reads layer 2's cache" $?

# ---- chat: one turn from standard input
printf 'hi\n' | "$BIN" chat -m "$M" -n 4 --temp 0 > "$T/chat" 2> "$T/chat.err"
check "chat exits 0 at end of input" $?
grep -q "^generated: 4 tokens" "$T/chat.err"; check "chat answers with 4 tokens" $?

# ---- bench: llama-bench style JSON
"$BIN" bench -m "$M" -p 16 -n 4 -r 1 -t 1 -o json > "$T/bench.json" 2> /dev/null
check "bench exits 0" $?
grep -q '"n_prompt": 16, "n_gen": 0' "$T/bench.json"; check "bench runs the pp16 test" $?
grep -q '"n_prompt": 0, "n_gen": 4' "$T/bench.json"; check "bench runs the tg4 test" $?
[ "$(grep -c '"avg_ts": [1-9]' "$T/bench.json")" -eq 2 ]; check "bench reports a positive speed per test" $?

# ---- the front door
"$BIN" no-such-command > /dev/null 2>&1
rc=$?; [ "$rc" -eq 2 ]; check "an unknown command exits 2 (got $rc)" $?
"$BIN" --help > "$T/help" 2>&1
grep -q "serve" "$T/help"; check "--help lists the commands" $?
finish
