#!/bin/sh
# What the library shows a program that links it:
#  - every symbol libgemma4.a defines starts with g4_ (internal) or gemma4_
#    (the API), so none can clash with ggml's or llama.cpp's (gguf_*,
#    ggml_*, llama_*) or anyone else's in the same program;
#  - the gemma4_ symbols are exactly the functions gemma4.h declares, and
#    libgemma4.so exports those and nothing else;
#  - no library object calls getenv, exit or abort: the library reads no
#    environment and never ends the process;
#  - gemma4.h compiles on its own, pedantic C11 and C++, with no other
#    header of the project beside it.
# Usage: sh tests/test_symbols.sh [BUILD]  (default: the directory of
# $GEMMA4_BIN, else build). Prints "test_symbols: N passed, M failed" last.
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-$(dirname "${GEMMA4_BIN:-build/gemma4}")}
LIB=$BUILD/libgemma4.a
SO=$BUILD/libgemma4.so
T=$(mktemp -d /tmp/gemma4-symbols-test.XXXXXX) || exit 1
passed=0; failed=0
check() { # check NAME EXIT-STATUS
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL test_symbols: $1" >&2; fi
}
finish() {
    rm -rf "$T"
    echo "test_symbols: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
[ -f "$LIB" ]; check "$LIB exists" $?
[ -f "$LIB" ] || finish

# ---- names
# (ASan's own markers, __odr_asan.NAME under make asan, are not the library's names)
nm -g --defined-only "$LIB" | awk 'NF == 3 { print $3 }' | grep -v '^__odr_asan' | sort -u > "$T/defined"
[ "$(wc -l < "$T/defined")" -gt 200 ]; check "nm lists the library's symbols ($(wc -l < "$T/defined"))" $?
grep -E '^(gguf|ggml|llama)_' "$T/defined" > "$T/clash"
[ ! -s "$T/clash" ]; check "no symbol in ggml's or llama.cpp's namespaces: $(tr '\n' ' ' < "$T/clash")" $?
grep -vE '^(g4|gemma4)_' "$T/defined" > "$T/foreign"
[ ! -s "$T/foreign" ]; check "every symbol starts with g4_ or gemma4_: not $(tr '\n' ' ' < "$T/foreign")" $?

# ---- the public API is gemma4.h
grep '^gemma4_' "$T/defined" > "$T/api"
# the functions gemma4.h declares: a name followed by "(" at the start of a
# declaration, after its return type
sed -n -E 's/^[a-z_0-9 ]+[ *]+(gemma4_[a-z_0-9]+)\(.*/\1/p' gemma4.h | sort -u > "$T/declared"
[ "$(wc -l < "$T/declared")" -gt 30 ]; check "gemma4.h declares the API ($(wc -l < "$T/declared") functions)" $?
comm -23 "$T/api" "$T/declared" > "$T/undeclared"
[ ! -s "$T/undeclared" ]; check "every exported gemma4_ function is in gemma4.h: not $(tr '\n' ' ' < "$T/undeclared")" $?
comm -13 "$T/api" "$T/declared" > "$T/missing"
[ ! -s "$T/missing" ]; check "every function gemma4.h declares is defined: not $(tr '\n' ' ' < "$T/missing")" $?
if [ -f "$SO" ]; then
    nm -D --defined-only "$SO" | awk 'NF == 3 { print $3 }' | sort -u > "$T/so"
    cmp -s "$T/so" "$T/declared"; check "libgemma4.so exports exactly gemma4.h: $(diff "$T/declared" "$T/so" | grep '^[<>]' | tr '\n' ' ')" $?
fi

# ---- no exit, no environment
nm -A -u "$LIB" 2>/dev/null | grep -wE 'getenv|secure_getenv|exit|_exit|_Exit|quick_exit|abort' > "$T/calls"
[ ! -s "$T/calls" ]; check "no library object calls getenv, exit or abort: $(tr '\n' ' ' < "$T/calls")" $?

# ---- gemma4.h alone
mkdir "$T/inc" && cp gemma4.h "$T/inc/"
printf '#include "gemma4.h"\nint main(void) { return GEMMA4_ERR_LEN == 512 ? 0 : 1; }\n' > "$T/alone.c"
${CC:-cc} -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$T/inc" "$T/alone.c" 2> "$T/c.err"
check "gemma4.h compiles alone as pedantic C11: $(head -n 3 "$T/c.err")" $?
# C++: the declarations must keep their C names (extern "C") to link
if command -v c++ > /dev/null; then
    cat > "$T/alone.cc" <<'EOF'
#include "gemma4.h"
#include <cstdio>
int main() {
    char err[GEMMA4_ERR_LEN];
    gemma4_model *m = gemma4_load("/nonexistent/model.gguf", err);
    std::puts(err);
    return m == NULL ? 0 : 1;
}
EOF
    # shellcheck disable=SC2086 # LDFLAGS: the sanitizer flags of make asan
    c++ -std=c++11 -Wall -Wextra -Werror -I"$T/inc" -o "$T/alone_cc" "$T/alone.cc" "$LIB" -lpthread -lm $LDFLAGS 2> "$T/cxx.err"
    check "a C++11 program includes gemma4.h and links: $(head -n 3 "$T/cxx.err")" $?
    "$T/alone_cc" > "$T/cxx.out" 2>&1 && grep -q "^/nonexistent/model.gguf: " "$T/cxx.out"
    check "it runs: gemma4_load reports the missing file ($(head -n 1 "$T/cxx.out"))" $?
fi
grep -n '#include "' gemma4.h > "$T/includes"
[ ! -s "$T/includes" ]; check "gemma4.h includes no header of the project: $(cat "$T/includes")" $?
finish
