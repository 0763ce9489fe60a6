#!/bin/sh
# Runs every test group given (test programs; .sh files are run with sh),
# repeats their FAIL and SKIP lines and their "NAME: N passed, M failed,
# K skipped" lines (", K skipped" may be left out by a group that never
# skips), and prints the total as the closing line "N passed, M failed,
# K skipped" (CI parses that form).
#
# First the fixture root is assembled and checked (tests/fixtures.sh) in
# $FIXTURES_DIR (default build/fixtures) and handed to the tests as
# GEMMA4_FIXTURES; a GEMMA4_FIXTURES set beforehand names a root assembled
# elsewhere, which is only checked.
#
# $RUN prefixes each program (qemu-aarch64 for the cross build); when it is
# not installed, every group is reported as skipped rather than failed.
passed=0; failed=0; skipped=0

group() { # COMMAND...: runs one group and adds up its summary line
    out=$("$@" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^(FAIL|SKIP |[a-z_0-9]+: [0-9]+ passed)' || true
    line=$(printf '%s\n' "$out" | grep -E '^[a-z_0-9]+: [0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' | tail -n 1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -n 20
        echo "FAIL $*: crashed or printed no summary (exit $rc)"
        failed=$((failed + 1)); return
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -E -n 's/.* ([0-9]+) skipped$/\1/p')
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $line: exit $rc with no failed check"; failed=$((failed + 1))
    fi
}

no_runner=""
if [ -n "$RUN" ] && ! command -v "${RUN%% *}" > /dev/null; then
    no_runner="${RUN%% *} is not installed"
fi

if [ -n "$GEMMA4_FIXTURES" ]; then
    group sh tests/fixtures.sh --check "$GEMMA4_FIXTURES"
elif [ -n "$no_runner" ]; then
    echo "SKIP fixtures: the models are written by the test build's gemma4, and $no_runner"
    skipped=$((skipped + 1))
else
    GEMMA4_FIXTURES=${FIXTURES_DIR:-build/fixtures}
    group sh tests/fixtures.sh "$GEMMA4_FIXTURES"
fi
export GEMMA4_FIXTURES

for t in "$@"; do
    case $t in
        *.sh) group sh "$t" ;;
        *)  if [ -n "$no_runner" ]; then
                echo "SKIP $(basename "$t"): $no_runner"; skipped=$((skipped + 1))
            else
                # shellcheck disable=SC2086 # $RUN is a command prefix, empty natively
                group $RUN "$t"
            fi ;;
    esac
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
