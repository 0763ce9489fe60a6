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

# ---- version: the Makefile's VERSION, from the top level and from a command
version=$(sed -n 's/^VERSION *:= *//p' Makefile)
[ "$("$BIN" --version | head -n 1)" = "gemma4 $version" ]; check "gemma4 --version prints 'gemma4 $version'" $?
[ "$("$BIN" run --version | head -n 1)" = "gemma4 $version" ]; check "gemma4 run --version prints the version" $?
[ "$("$BIN" info --version | head -n 1)" = "gemma4 $version" ]; check "gemma4 info --version prints the version" $?
"$BIN" --version | sed -n 2p | grep -q "^built with .* kernels: "; check "--version gives build information" $?

# ---- loading: --no-mmap gives the same logits (Q4_0: the repacked path,
# whose source pages are released from the heap copy too); --mlock locks or
# fails naming RLIMIT_MEMLOCK
M4=$T/tiny_q4_0.gguf
"$BIN" mkmodel --preset tiny-e2b --type q4_0 -o "$M4" > /dev/null 2>&1
for model in "$M" "$M4"; do
    "$BIN" logits -m "$model" --tokens 2,10,20,30,40,50,60,70,80,90 -o "$T/l.mmap" 2> /dev/null
    "$BIN" logits -m "$model" --tokens 2,10,20,30,40,50,60,70,80,90 -o "$T/l.read" --no-mmap 2> /dev/null
    [ -s "$T/l.mmap" ] && cmp -s "$T/l.mmap" "$T/l.read"; check "logits with --no-mmap equal the mapped ones ($(basename "$model"))" $?
done
"$BIN" logits -m "$M4" --tokens 2,10,20,30,40,50,60,70,80,90 -o "$T/l.lock" --mlock 2> "$T/lock.err"
rc=$?
if [ "$rc" -eq 0 ]; then
    cmp -s "$T/l.mmap" "$T/l.lock"; check "logits with --mlock equal the mapped ones" $?
else
    grep -q "RLIMIT_MEMLOCK" "$T/lock.err"; check "a refused --mlock names RLIMIT_MEMLOCK" $?
fi
"$BIN" run -m "$M4" -p "Hello world" -n 3 --temp 0 --no-mmap --mlock > /dev/null 2> "$T/lockrun.err"
rc=$?; [ "$rc" -eq 0 ] || grep -q "RLIMIT_MEMLOCK" "$T/lockrun.err"; check "run takes --no-mmap --mlock" $?
# the refusal, forced: a 64 KiB lock limit in a child (root keeps CAP_IPC_LOCK,
# which ignores the limit, unless setpriv drops it)
lowlock() { sh -c "ulimit -l 64 && exec \"\$@\"" sh "$@"; }
if [ "$(id -u)" -eq 0 ]; then
    if command -v setpriv > /dev/null 2>&1; then
        lowlock() { setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock sh -c "ulimit -l 64 && exec \"\$@\"" sh "$@"; }
    else
        lowlock() { return 125; }
    fi
fi
lowlock "$BIN" logits -m "$M4" --tokens 2,10 -o "$T/l.low" --mlock > /dev/null 2> "$T/low.err"
rc=$?
if [ "$rc" -eq 125 ]; then
    echo "SKIP mlock-refusal: running as root without setpriv to drop CAP_IPC_LOCK"
elif grep -q __asan_init "$BIN"; then
    echo "SKIP mlock-refusal: AddressSanitizer replaces mlock by a no-op in this build"
else
    [ "$rc" -eq 1 ]; check "--mlock over RLIMIT_MEMLOCK exits 1 (got $rc)" $?
    [ "$(wc -l < "$T/low.err")" -eq 1 ] && grep -q "$M4: cannot lock .* RLIMIT_MEMLOCK" "$T/low.err"
    check "--mlock over RLIMIT_MEMLOCK: one line naming the file and RLIMIT_MEMLOCK" $?
    lowlock "$BIN" logits -m "$M4" --tokens 2,10 -o "$T/l.low" > /dev/null 2>&1
    check "without --mlock the same limit loads" $?
    # Q8_0: nothing is repacked, so this is the file's own bytes refused
    lowlock "$BIN" logits -m "$M" --tokens 2,10 -o "$T/l.low" --mlock --no-mmap > /dev/null 2> "$T/low8.err"
    rc=$?; [ "$rc" -eq 1 ] && grep -q "$M: cannot lock $(wc -c < "$M") bytes .* RLIMIT_MEMLOCK" "$T/low8.err"
    check "--mlock of a file over RLIMIT_MEMLOCK names its size (exit $rc)" $?
fi

# ---- llama.cpp's sampling and stopping options in run
"$BIN" run -m "$M" -p "Hello world" -n 20 --temp 0 > "$T/g20" 2> /dev/null
full=$(cat "$T/g20")
# -r: stops right after the reverse prompt shows up, a prefix of the free run
rp=$(printf '%s' "$full" | cut -c 9-11)
"$BIN" run -m "$M" -p "Hello world" -n 20 --temp 0 -r "$rp" > "$T/grp" 2> /dev/null
got=$(cat "$T/grp")
at=$(awk -v s="$full" -v r="$rp" 'BEGIN { print index(s, r) }')
case "$full" in "$got"*) prefix=0 ;; *) prefix=1 ;; esac
[ "$prefix" -eq 0 ] && [ "${#got}" -ge $((at + ${#rp} - 1)) ] && [ "${#got}" -lt $((at + ${#rp} + 16)) ] && [ "${#got}" -lt "${#full}" ]
check "-r '$rp' stops the run where it appears (${#got} of ${#full} bytes, first at $at)" $?
"$BIN" run -m "$M" -p "Hello world" -n 20 --temp 0 --reverse-prompt "$rp" > "$T/grp2" 2> /dev/null
cmp -s "$T/grp" "$T/grp2"; check "--reverse-prompt is -r" $?
# --logit-bias: +100 forces a token, whose text detokenize gives; -inf bans the greedy one
want=$("$BIN" detokenize -m "$M" 353)
"$BIN" run -m "$M" -p "Hello world" -n 1 --temp 0 --logit-bias 353+100 > "$T/lb" 2> /dev/null
[ "$(cat "$T/lb")" = "$want" ]; check "--logit-bias 353+100 makes token 353 ('$want') the pick" $?
"$BIN" run -m "$M" -p "Hello world" -n 1 --temp 0 > "$T/g1" 2> /dev/null
g1=$(cat "$T/g1")
gid=$("$BIN" tokenize -m "$M" --no-bos "$g1")
[ "$("$BIN" detokenize -m "$M" "$gid")" = "$g1" ]; check "the greedy first token '$g1' is one token ($gid)" $?
"$BIN" run -m "$M" -p "Hello world" -n 1 --temp 0 -l "$gid-inf" > "$T/lban" 2> /dev/null
[ -s "$T/lban" ] && ! cmp -s "$T/g1" "$T/lban"; check "-l $gid-inf bans the greedy token" $?
"$BIN" run -m "$M" -p x --logit-bias 12x3 > /dev/null 2> "$T/lbad"
rc=$?; [ "$rc" -eq 2 ] && [ "$(wc -l < "$T/lbad")" -eq 1 ]; check "a malformed --logit-bias is one line, exit 2" $?
# tokenizer.ggml.suppress_tokens: the same model suppressing its greedy token never picks it, even pushed by a bias
"$BIN" mkmodel --preset tiny-e2b --type q8_0 --set "suppress_tokens=$gid" -o "$T/sup.gguf" > /dev/null 2>&1
"$BIN" run -m "$T/sup.gguf" -p "Hello world" -n 1 --temp 0 > "$T/sup1" 2> /dev/null
[ -s "$T/sup1" ] && ! cmp -s "$T/g1" "$T/sup1"; check "a suppressed token is not the greedy pick" $?
"$BIN" run -m "$T/sup.gguf" -p "Hello world" -n 1 --temp 0 -l "$gid+100" > "$T/sup2" 2> /dev/null
[ -s "$T/sup2" ] && ! cmp -s "$T/g1" "$T/sup2"; check "a suppressed token is not picked even with a +100 bias" $?
# penalties: a frequency penalty over the whole history changes a repetitive greedy run
"$BIN" run -m "$M" -p "Hello world" -n 20 --temp 0 --frequency-penalty 50 --repeat-last-n -1 > "$T/pen" 2> /dev/null
[ -s "$T/pen" ] && ! cmp -s "$T/g20" "$T/pen"; check "--frequency-penalty changes the greedy text" $?
"$BIN" run -m "$M" -p "Hello world" -n 20 --temp 0 --repeat-penalty 1 --presence-penalty 0 --frequency-penalty 0 \
    --repeat-last-n 64 > "$T/pen0" 2> /dev/null
cmp -s "$T/g20" "$T/pen0"; check "neutral penalties change nothing" $?
"$BIN" run -m "$M" -p "Hello world" -n 20 --temp 0 --repeat-penalty 5 > "$T/pen1" 2> /dev/null
[ -s "$T/pen1" ] && ! cmp -s "$T/g20" "$T/pen1"; check "--repeat-penalty 5 changes the greedy text" $?
"$BIN" run -m "$M" -p "Hello world" -n 20 --temp 0 --presence-penalty 50 > "$T/pen2" 2> /dev/null
[ -s "$T/pen2" ] && ! cmp -s "$T/g20" "$T/pen2"; check "--presence-penalty 50 changes the greedy text" $?
# batch sizes change no result; GPU placement options are explained and ignored
"$BIN" run -m "$M" -p "Hello world" -n 5 --temp 0 -s -1 > "$T/sr" 2> "$T/sr.err" && grep -q "seed [0-9]" "$T/sr.err"
check "--seed -1 (llama.cpp's random seed) is taken" $?
"$BIN" run -m "$M" -p "Hello world" -n 20 --temp 0 -b 3 -ub 2 > "$T/b3" 2> /dev/null
cmp -s "$T/g20" "$T/b3"; check "-b 3 -ub 2 give the same text" $?
"$BIN" run -m "$M" -p "Hello world" -n 20 --temp 0 -sm layer -mg 0 -ts 1,1 --gpu-layers 9 -nkvo -sp -co \
    -no-cnv > "$T/gpu" 2> "$T/gpu.err"
cmp -s "$T/g20" "$T/gpu"; check "GPU options change nothing" $?
[ "$(grep -c "ignored: this engine runs on the CPU only" "$T/gpu.err")" -eq 5 ]; check "each GPU option gets its note" $?
for opt in --jinja --chat-template-file --system --definitely-not-llama; do
    "$BIN" run -m "$M" -p x "$opt" x > /dev/null 2> "$T/opt.err"
    rc=$?; [ "$rc" -eq 2 ] && [ "$(wc -l < "$T/opt.err")" -eq 1 ] && grep -q "unknown option '$opt'" "$T/opt.err"
    check "run refuses the chat option $opt in one line" $?
done

# ---- constrained output (the trained model: real text, so the grammar has work to do)
K=models/kjv-dense-q8_0.gguf
"$BIN" run -m "$K" -p "And God said" -n 12 --temp 0 --grammar 'root ::= ("ab" | "ba")+' > "$T/gram" 2> /dev/null
check "run --grammar exits 0" $?
[ -s "$T/gram" ] && [ -z "$(tr -d 'ab\n' < "$T/gram")" ]; check "--grammar: only a and b come out ($(head -c 40 "$T/gram"))" $?
printf 'root ::= ("ab" | "ba")+\n' > "$T/ab.gbnf"
"$BIN" run -m "$K" -p "And God said" -n 12 --temp 0 --grammar-file "$T/ab.gbnf" > "$T/gram2" 2> /dev/null
cmp -s "$T/gram" "$T/gram2"; check "--grammar-file reads the same grammar" $?
"$BIN" run -m "$K" -p x --grammar 'root ::= missing' > /dev/null 2> "$T/gbad"
rc=$?; [ "$rc" -eq 1 ] && grep -q "line 1, column" "$T/gbad"; check "a bad grammar fails naming line and column" $?
for seed in 1 2 3; do
    "$BIN" run -m "$K" -p "And God said" -n 10 --temp 1 --seed $seed -j '{"enum":["yes","no"]}' > "$T/js" 2> /dev/null
    got=$(tr -d ' \n' < "$T/js")
    [ "$got" = '"yes"' ] || [ "$got" = '"no"' ]
    check "-j enum: the output is \"yes\" or \"no\" (seed $seed: $(od -An -c "$T/js" | tr -d '\n' | tr -s ' ' | head -c 60))" $?
done
printf '{"type":"integer"}' > "$T/int.json"
"$BIN" run -m "$K" -p "And God said" -n 12 --temp 0 --json-schema-file "$T/int.json" > "$T/jsi" 2> /dev/null
tr -d ' \n' < "$T/jsi" | grep -qE '^-?(0|[1-9][0-9]*)$'; check "--json-schema-file integer: an integer comes out" $?
"$BIN" run -m "$K" -p x -j '{"type":"bogus"}' > /dev/null 2> "$T/jsbad"
rc=$?; [ "$rc" -eq 1 ] && grep -q "JSON schema" "$T/jsbad"; check "a bad JSON schema fails naming it" $?

# ---- context shift: off (llama.cpp's default) stops at a full context; on, generation goes on
"$BIN" run -m "$M" -p "Hello world" -n 300 -c 64 --temp 0 > /dev/null 2> "$T/full.err"
check "a full context without --context-shift still exits 0" $?
grep -q "context of 64 tokens is full" "$T/full.err"; check "a full context is reported" $?
grep -q "^generated: 55 tokens" "$T/full.err"; check "it stops at 64 positions (10 prompt + 54 fed + 1)" $?
"$BIN" run -m "$M" -p "Hello world" -n 300 -c 64 --temp 0 --context-shift > "$T/shift" 2> "$T/shift.err"
check "run -c 64 -n 300 --context-shift exits 0" $?
grep -q "^generated: 300 tokens" "$T/shift.err"; check "--context-shift generates all 300 tokens in 64 positions" $?
shifts=$(sed -n 's/^context shifts: //p' "$T/shift.err")
[ "${shifts:-0}" -ge 5 ]; check "300 tokens in 64 positions take several shifts (got ${shifts:-0})" $?
# (both end in the newline run prints; the shifted text goes on past it)
head -c $(($(wc -c < "$T/g20") - 1)) "$T/shift" > "$T/shift.head"; head -c $(($(wc -c < "$T/g20") - 1)) "$T/g20" > "$T/g20.head"
cmp -s "$T/shift.head" "$T/g20.head"; check "text before the first shift is the unshifted text" $?
"$BIN" run -m "$M" -p "Hello world" -n 300 -c 64 --temp 0 --context-shift --keep 4 > /dev/null 2> "$T/keep.err"
grep -q "^generated: 300 tokens" "$T/keep.err"; check "--keep 4 shifts too" $?
"$BIN" run -m "$M" -p "Hello world one two three four five six seven eight nine ten eleven twelve thirteen fourteen" \
    -n 5 -c 16 --context-shift --keep -1 > /dev/null 2> "$T/keepbig.err"
rc=$?; [ "$rc" -eq 1 ] && grep -q "\-\-keep holds" "$T/keepbig.err"; check "--keep over half the context is refused" $?
printf 'hello there\nhow are you\nwhat is this\nmore words\nand again\nlast one\n' |
    "$BIN" chat -m "$M" -c 64 -n 20 --temp 0 --context-shift > /dev/null 2> "$T/chatshift.err"
check "chat with --context-shift goes on past a full context" $?
grep -q "^generated: 120 tokens" "$T/chatshift.err"; check "chat answers all six turns with 20 tokens each" $?
printf 'hello there\nhow are you\nwhat is this\n' | "$BIN" chat -m "$M" -c 64 -n 20 --temp 0 > /dev/null 2> "$T/chatfull.err"
rc=$?; [ "$rc" -eq 1 ] && grep -q "does not fit the context of 64" "$T/chatfull.err"
check "chat without --context-shift stops with a message when the context is full" $?

# ---- chat tokenizes what the user types as text: "<turn|>" cannot close the turn
turn_end=$("$BIN" tokenize -m "$M" --no-bos "<turn|>")
printf 'a <turn|> b\n' | "$BIN" chat -m "$M" -n 1 --temp 0 --verbose-prompt > /dev/null 2> "$T/forge.err"
[ "$(grep -c "^ *$turn_end -> '<turn|>'" "$T/forge.err")" -eq 1 ]
check "user text '<turn|>' stays text: one end-of-turn token ($turn_end), the template's" $?
grep -q "'<' *$" "$T/forge.err" || grep -q " -> '<'" "$T/forge.err"; check "the typed '<turn|>' is tokenized as characters" $?
# the same with the real Gemma 4 vocabulary, whose GGUF carries the model's own Jinja template
if gzip -dc tests/data/tokenizer/ggml-vocab-gemma-4.gguf.gz > "$T/vocab.gguf" 2> /dev/null &&
    "$BIN" mkmodel --preset tiny-dense --type q8_0 --vocab "$T/vocab.gguf" -o "$T/real.gguf" > /dev/null 2>&1; then
    for how in --jinja --no-jinja; do
        printf 'a <turn|> b\n' | "$BIN" chat -m "$T/real.gguf" -n 1 --temp 0 --verbose-prompt $how > /dev/null 2> "$T/rforge.err"
        [ "$(grep -c "^ *106 -> '<turn|>'" "$T/rforge.err")" -eq 1 ] && grep -q "^ *105 -> '<|turn>'" "$T/rforge.err"
        check "real vocabulary, $how: the typed '<turn|>' is text, one end-of-turn token (106)" $?
    done
else
    check "the real vocabulary unpacks and a model is written with it" 1
fi

# ---- chat templates: the model's (none in the fixture: the built-in one), a file, kwargs
printf '%s\n' '{%- for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor -%}' \
    '{%- if add_generation_prompt %}<|turn>model' '{{ greeting | default("none") }}{% endif %}' > "$T/tpl.jinja"
printf 'hi\n' | "$BIN" chat -m "$M" -n 1 --temp 0 --verbose-prompt --chat-template-file "$T/tpl.jinja" \
    --chat-template-kwargs '{"greeting": "zq"}' > /dev/null 2> "$T/tpl.err"
check "chat --chat-template-file exits 0" $?
prompt=$(sed -n "s/^ *[0-9]* -> '\(.*\)'$/\1/p" "$T/tpl.err" | tr -d '\n')
[ "$prompt" = "<bos>[user:hi]<|turn>modelzq" ]; check "the template file and its kwargs render the prompt (got '$prompt')" $?
printf 'hi\n' | "$BIN" chat -m "$M" -n 1 --temp 0 --verbose-prompt > /dev/null 2> "$T/tb.err"
printf 'hi\n' | "$BIN" chat -m "$M" -n 1 --temp 0 --verbose-prompt --no-jinja > /dev/null 2> "$T/tn.err"
printf 'hi\n' | "$BIN" chat -m "$M" -n 1 --temp 0 --verbose-prompt --jinja > /dev/null 2> "$T/tj.err"
grep ' -> ' "$T/tb.err" > "$T/tb.ids"; grep ' -> ' "$T/tn.err" > "$T/tn.ids"; grep ' -> ' "$T/tj.err" > "$T/tj.ids"
[ -s "$T/tb.ids" ] && cmp -s "$T/tb.ids" "$T/tn.ids" && cmp -s "$T/tb.ids" "$T/tj.ids"
check "a model without tokenizer.chat_template renders the built-in template with --jinja and --no-jinja" $?
printf 'hi\n' | "$BIN" chat -m "$M" -n 1 --chat-template-kwargs '[1' > /dev/null 2> "$T/kw.err"
rc=$?; [ "$rc" -eq 1 ] && grep -q "chat-template-kwargs" "$T/kw.err"; check "malformed --chat-template-kwargs fails naming it (exit $rc)" $?
printf 'hi\n' | "$BIN" chat -m "$M" -n 1 --temp 0 --verbose-prompt --chat-template-kwargs '{"enable_thinking": true, "x": 1}' \
    > /dev/null 2> "$T/kwt.err"
grep -q " -> '<|think|>'" "$T/kwt.err"; check "--chat-template-kwargs enable_thinking turns thinking on in the built-in template" $?
grep -q "'x' ignored: the built-in template has no such variable" "$T/kwt.err"; check "a kwarg the built-in template lacks is named as ignored" $?

# ---- speculative decoding (-md): the MTP drafters of tests/data/mtp, made for
# the F32 fixture models, give exactly the text plain decoding gives: greedy
# with a random drafter (repeat penalty: varied text), sampled
# with a fixed seed, and greedy with an aligned drafter whose guesses are kept
FX=${GEMMA4_FIXTURES:-build/fixtures}/models
for m in dense e2b moe; do
    plain() { "$BIN" run -m "$FX/${m}_f32.gguf" -p "hello world" -n 60 -ctk f32 -ctv f32 "$@" 2> /dev/null; }
    spec() { "$BIN" run -m "$FX/${m}_f32.gguf" -p "hello world" -n 60 -ctk f32 -ctv f32 --draft-max 4 "$@" 2> "$T/spec.err"; }
    plain --temp 0 --repeat-penalty 3 > "$T/p1"; spec -md "tests/data/mtp/${m}_rand.gguf" --temp 0 --repeat-penalty 3 > "$T/s1"
    [ -s "$T/p1" ] && cmp -s "$T/p1" "$T/s1"; check "$m: -md (random drafter), greedy: the same text" $?
    grep -q "^drafts: [0-9]* of [1-9][0-9]* kept" "$T/spec.err"; check "$m: -md reports its drafts ($(tail -n 1 "$T/spec.err"))" $?
    plain --temp 0.7 -s 5 --repeat-penalty 3 > "$T/p2"; spec -md "tests/data/mtp/${m}_align.gguf" --temp 0.7 -s 5 --repeat-penalty 3 > "$T/s2"
    [ -s "$T/p2" ] && cmp -s "$T/p2" "$T/s2"; check "$m: -md, sampled with a seed: the same text" $?
    plain --temp 0 > "$T/p3"; spec -md "tests/data/mtp/${m}_align.gguf" --temp 0 > "$T/s3"
    cmp -s "$T/p3" "$T/s3"; check "$m: -md (aligned drafter), greedy: the same text" $?
    grep -q "^drafts: [1-9][0-9]* of" "$T/spec.err"; check "$m: the aligned drafter has guesses kept ($(tail -n 1 "$T/spec.err"))" $?
done
# --ignore-eos is a ban in the sampler, so it holds for drafted tokens too
"$BIN" run -m "$FX/e2b_f32.gguf" -p "hello world" -n 80 --temp 0.7 -s 3 -ctk f32 -ctv f32 --ignore-eos > "$T/ie1" 2> "$T/ie1.err"
"$BIN" run -m "$FX/e2b_f32.gguf" -p "hello world" -n 80 --temp 0.7 -s 3 -ctk f32 -ctv f32 --ignore-eos \
    -md tests/data/mtp/e2b_align.gguf > "$T/ie2" 2> "$T/ie2.err"
grep -q "^generated: 80 tokens" "$T/ie1.err" && grep -q "^generated: 80 tokens" "$T/ie2.err"
check "--ignore-eos generates all 80 tokens, with and without -md" $?
cmp -s "$T/ie1" "$T/ie2"; check "--ignore-eos with -md: the same text" $?
# chat: two turns, the second resuming the cache the first left (drafts included)
printf 'hello\nagain\n' | "$BIN" chat -m "$FX/dense_f32.gguf" -n 30 --temp 0 -ctk f32 -ctv f32 > "$T/c1" 2> /dev/null
printf 'hello\nagain\n' | "$BIN" chat -m "$FX/dense_f32.gguf" -md tests/data/mtp/dense_align.gguf -n 30 --temp 0 \
    -ctk f32 -ctv f32 > "$T/c2" 2> "$T/c2.err"
[ -s "$T/c1" ] && cmp -s "$T/c1" "$T/c2"; check "chat -md, two turns: the same text" $?
grep -q "^drafts: [1-9][0-9]* of" "$T/c2.err"; check "chat -md keeps drafts ($(tail -n 1 "$T/c2.err"))" $?
"$BIN" run -m "$FX/dense_f32.gguf" -md tests/data/mtp/e2b_align.gguf -p hi -n 3 > /dev/null 2> "$T/mismatch.err"
rc=$?; [ "$rc" -ne 0 ] && grep -q "e2b_align.gguf: .*target" "$T/mismatch.err"
check "a drafter made for another target is refused, naming the file (exit $rc)" $?
"$BIN" run -m "$FX/dense_f32.gguf" -md tests/data/mtp/dense_align.gguf --draft-min 6 --draft-max 4 -p hi > /dev/null 2>&1
[ $? -eq 2 ]; check "--draft-min above --draft-max is a usage error" $?

# ---- the front door

"$BIN" no-such-command > /dev/null 2>&1
rc=$?; [ "$rc" -eq 2 ]; check "an unknown command exits 2 (got $rc)" $?
"$BIN" --help > "$T/help" 2>&1
grep -q "serve" "$T/help"; check "--help lists the commands" $?
finish
