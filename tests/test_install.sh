#!/bin/sh
# `make install` into a temporary prefix (and again under DESTDIR), then
# examples/simple.c built against the installed files with pkg-config alone,
# once statically and once against libgemma4.so, and both run on a model.
# Needs pkg-config (else one SKIP line). Under make asan the sanitizer's
# LDFLAGS come along; a sanitized program cannot be linked statically, so
# that variant is skipped there.
# Usage: sh tests/test_install.sh [BUILD]  (default: the directory of
# $GEMMA4_BIN, else build). Prints "test_install: N passed, M failed, K
# skipped" last.
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-$(dirname "${GEMMA4_BIN:-build/gemma4}")}
CC=${CC:-cc}
passed=0; failed=0; skipped=0
check() { # check NAME EXIT-STATUS
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL test_install: $1" >&2; fi
}
skip() { skipped=$((skipped + 1)); echo "SKIP test_install: $1"; }
T=$(mktemp -d /tmp/gemma4-install-test.XXXXXX) || exit 1
finish() {
    rm -rf "$T"
    echo "test_install: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit
}
if ! command -v pkg-config > /dev/null; then
    skip "pkg-config is not installed"
    finish
fi
P=$T/prefix
# the objects are built already (make test depends on them); this installs
env -u MAKEFLAGS -u MAKELEVEL make -s BUILD="$BUILD" PREFIX="$P" install > "$T/make.out" 2>&1
check "make install PREFIX=... exits 0: $(tail -n 3 "$T/make.out")" $?
for f in bin/gemma4 lib/libgemma4.a lib/libgemma4.so include/gemma4.h lib/pkgconfig/gemma4.pc; do
    [ -f "$P/$f" ]; check "installs $f" $?
done
[ "$(ls "$P/include")" = "gemma4.h" ]; check "include/ holds gemma4.h alone" $?
"$P/bin/gemma4" mkmodel --preset tiny-e2b -o "$T/m.gguf" > /dev/null 2>&1; check "the installed gemma4 runs" $?

export PKG_CONFIG_PATH="$P/lib/pkgconfig"
[ "$(pkg-config --modversion gemma4)" = "$(sed -n 's/^VERSION := //p' Makefile)" ]; check "pkg-config finds gemma4" $?
[ "$(pkg-config --libs gemma4 | sed 's/ *$//')" = "-L$P/lib -lgemma4" ] &&
    [ "$(pkg-config --cflags gemma4 | sed 's/ *$//')" = "-I$P/include" ]
check "pkg-config gives -I$P/include and -L$P/lib -lgemma4" $?
[ "$(pkg-config --static --libs gemma4 | sed 's/ *$//')" = "-L$P/lib -lgemma4 -lpthread -lm" ]
check "--static adds -lpthread -lm: $(pkg-config --static --libs gemma4)" $?

run_example() { # run_example NAME PROGRAM: runs it on the model, checks 8 tokens
    "$2" "$T/m.gguf" "The capital of France" 8 > "$T/$1.out" 2> "$T/$1.err"
    check "$1: the example runs ($(tail -n 1 "$T/$1.err"))" $?
    [ "$(tail -n 1 "$T/$1.err")" = "8 tokens" ] && [ -s "$T/$1.out" ]; check "$1: 8 tokens of text" $?
}
# shellcheck disable=SC2046,SC2086 # pkg-config's words are separate flags; LDFLAGS likewise
case " $LDFLAGS " in
*-fsanitize*) skip "static example: sanitized programs cannot link statically" ;;
*)  $CC -std=c11 -static -o "$T/simple_static" examples/simple.c $(pkg-config --cflags --static --libs gemma4) \
        $LDFLAGS > "$T/cc1.err" 2>&1
    check "cc -static examples/simple.c \$(pkg-config --cflags --static --libs gemma4): $(head -n 3 "$T/cc1.err")" $?
    ! readelf -d "$T/simple_static" 2>/dev/null | grep -q NEEDED; check "the static example needs no shared library" $?
    run_example static "$T/simple_static" ;;
esac
# shellcheck disable=SC2046,SC2086
$CC -std=c11 -o "$T/simple_shared" examples/simple.c $(pkg-config --cflags --libs gemma4) $LDFLAGS > "$T/cc2.err" 2>&1
check "cc examples/simple.c \$(pkg-config --cflags --libs gemma4): $(head -n 3 "$T/cc2.err")" $?
readelf -d "$T/simple_shared" | grep NEEDED | grep -q "libgemma4.so"; check "the shared example needs libgemma4.so" $?
export LD_LIBRARY_PATH="$P/lib"
run_example shared "$T/simple_shared"
unset LD_LIBRARY_PATH
cmp -s "$T/static.out" "$T/shared.out" || [ ! -f "$T/static.out" ]; check "static and shared print the same text" $?

# DESTDIR stages the same tree, with the final prefix in gemma4.pc
env -u MAKEFLAGS -u MAKELEVEL make -s BUILD="$BUILD" PREFIX=/opt/g4 DESTDIR="$T/stage" install > "$T/make2.out" 2>&1
check "make install DESTDIR=... exits 0: $(tail -n 3 "$T/make2.out")" $?
[ -f "$T/stage/opt/g4/lib/libgemma4.so" ] && grep -qx "prefix=/opt/g4" "$T/stage/opt/g4/lib/pkgconfig/gemma4.pc"
check "DESTDIR: files under the staging root, prefix=/opt/g4 in gemma4.pc" $?
finish
