#!/bin/sh
# Assembles the fixture root the tests read (GEMMA4_FIXTURES) in directory
# OUT: links to the data files of tests/data, the real vocabulary unpacked
# from its .gz, and the 12 fixture models, which are not stored but written
# again by `gemma4 mkmodel` (same tensors, name and tokenizer, hence the
# same bytes). Then every file is checked against its recorded SHA-256
# (tests/data/SHA256SUMS, and the models' sums in manifest.json), so no test
# reads a damaged or stale file without a failure naming it.
#
#   sh tests/fixtures.sh OUT            assemble OUT, then check it
#   sh tests/fixtures.sh --check ROOT   only check a root assembled elsewhere
#
# GEMMA4_BIN (default build/gemma4) writes the models, prefixed by $RUN
# (qemu-aarch64 for the cross build). Prints "fixtures: N passed, M failed,
# 0 skipped" last, like the test programs.
data=$(cd "$(dirname "$0")/data" && pwd) || exit 1
bin=${GEMMA4_BIN:-build/gemma4}
passed=0; failed=0
ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL fixtures: $*" >&2; }
finish() {
    echo "fixtures: $passed passed, $failed failed, 0 skipped"
    [ "$failed" -eq 0 ]
    exit
}

if [ "$1" = --check ]; then
    root=${2:?usage: fixtures.sh OUT | --check ROOT}
else
    root=${1:?usage: fixtures.sh OUT | --check ROOT}
fi
# "HASH  models/NAME.gguf" for every model of the manifest: in each model
# object the "file" line comes before the model's own "sha256" line.
sums=$(awk -F'"' '$2 == "file" && $4 ~ /^models\// { f = $4 }
                  $2 == "sha256" && f != "" { print $4 "  " f; f = "" }' "$data/manifest.json")
n_models=$(printf '%s\n' "$sums" | grep -c 'models/')
if [ "$n_models" -eq 12 ]; then ok; else fail "$data/manifest.json: lists $n_models models with a sha256, expected 12"; fi

if [ "$1" != --check ]; then
    rm -rf "$root" && mkdir -p "$root/tokenizer" "$root/models" || { fail "$root: cannot create"; finish; }
    # Links: the data stay in one place and a clone's edits show up at once.
    # tokenizer/ is a folder of its own, to hold the unpacked vocabulary too.
    for f in "$data"/*; do
        case ${f##*/} in tokenizer | README.md | SHA256SUMS) ;; *) ln -s "$f" "$root/" ;; esac
    done
    for f in "$data"/tokenizer/*; do ln -s "$f" "$root/tokenizer/"; done
    vocab=$root/tokenizer/ggml-vocab-gemma-4.gguf
    if gzip -dc "$data/tokenizer/ggml-vocab-gemma-4.gguf.gz" > "$vocab"; then ok
    else fail "$data/tokenizer/ggml-vocab-gemma-4.gguf.gz: gzip -dc failed"; rm -f "$vocab"; fi
    for f in $(printf '%s\n' "$sums" | sed 's/.*  //'); do
        name=$(basename "$f" .gguf)          # e.g. e2b_q4_0: shape e2b, type q4_0
        # shellcheck disable=SC2086 # $RUN is a command prefix, empty natively
        if $RUN "$bin" mkmodel --preset "tiny-${name%%_*}" --type "${name#*_}" --name "$name" \
            --vocab "$data/tokenizer/synthetic-vocab.gguf" -o "$root/$f" > /dev/null; then ok
        else fail "$root/$f: ${RUN:+$RUN }$bin mkmodel failed"; fi
    done
fi

# sha256sum -c reports each file as "PATH: OK" or "PATH: FAILED[ open or read]".
check_sums() { # LIST-FILE, with paths relative to the root
    (cd "$root" && sha256sum -c "$1" 2>/dev/null) > "$tmp/out"
    while IFS= read -r line; do
        case $line in
            *": OK") ok ;;
            *": FAILED open or read") fail "$root/${line%: FAILED*}: missing or unreadable" ;;
            *": FAILED") fail "$root/${line%: FAILED}: SHA-256 differs from the recorded one" ;;
        esac
    done < "$tmp/out"
    [ "$(grep -c . "$1")" -eq "$(grep -c ': \(OK\|FAILED\)' "$tmp/out")" ] || fail "$1: not every listed file was checked"
}
tmp=$(mktemp -d) || exit 1
if [ -d "$root" ] && command -v sha256sum > /dev/null; then
    check_sums "$data/SHA256SUMS"
    printf '%s\n' "$sums" > "$tmp/models.sha256"
    check_sums "$tmp/models.sha256"
else
    fail "$root: no such directory, or no sha256sum to check it"
fi
rm -rf "$tmp"
finish
