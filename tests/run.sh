#!/bin/sh
# Runs every test program given, adds up their "NAME: N passed, M failed"
# lines and prints the total as the closing line. $RUN prefixes each program
# (qemu-aarch64 for the cross build).
passed=0; failed=0; broken=""
for t in "$@"; do
    out=$($RUN "$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^(FAIL|[a-z_0-9]+: [0-9]+ passed)' || true
    line=$(printf '%s\n' "$out" | grep -E '^[a-z_0-9]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -n 20
        echo "$t: crashed or printed no summary (exit $rc)"
        broken="$broken $t"; failed=$((failed + 1)); continue
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
    f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "$t: exit $rc with no failed check"; broken="$broken $t"; failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
