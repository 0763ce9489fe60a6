#!/bin/sh
# Runs each libFuzzer target for a bounded time on a copy of its seed corpus
# (tests/corpus/NAME/, plus what the target's seeding rule adds) and reports
# executions reached. Any crash, leak or sanitizer report fails the run.
secs=$1; shift
status=0
for f in "$@"; do
    name=$(basename "$f")
    work=build/fuzz/corpus-$name
    rm -rf "$work"; mkdir -p "$work"
    [ -d "tests/corpus/$name" ] && cp tests/corpus/"$name"/* "$work"/ 2>/dev/null
    if [ -f "tests/seed_$name.sh" ] && ! sh "tests/seed_$name.sh" "$work"; then
        echo "$name: FAILED (tests/seed_$name.sh could not write its seeds)"; status=1; continue
    fi
    # crashing inputs go to build/fuzz/NAME-crash-..., not into the work tree;
    # an input running 30 s counts as a hang
    if "$f" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="build/fuzz/$name-" "$work" > "build/fuzz/$name.log" 2>&1; then
        execs=$(grep -E 'stat::number_of_executed_units' "build/fuzz/$name.log" | awk '{print $2}')
        echo "$name: ${secs}s, $execs executions, no crash"
    else
        tail -n 40 "build/fuzz/$name.log"
        echo "$name: FAILED"; status=1
    fi
done
exit $status
