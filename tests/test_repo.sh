#!/bin/sh
# The repository must stand on its own: a fresh clone has nothing beside it,
# so no file may point at the folder of fixtures, spec and tools that it was
# first developed next to. The tests' data live in tests/data. Looks at the files git tracks plus those not yet added (not
# the ignored ones), or, outside a git checkout, at every file but build/.
# Prints "test_repo: N passed, M failed, 0 skipped" last: one check per file.
cd "$(dirname "$0")/.." || exit 1
# The brackets keep this file from matching its own pattern.
pattern='\.\./[s]hared|/work/[s]hared|[s]hared/(fixtures|spec|tools|hooks)'
list=$(mktemp) || exit 1
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    git ls-files -co --exclude-standard > "$list"
else
    find . \( -path ./build -o -path ./.git \) -prune -o -type f -print | sed 's|^\./||' > "$list"
fi
passed=0; failed=0
while IFS= read -r f; do
    [ -f "$f" ] || continue            # tracked but deleted in the work tree
    hits=$(grep -InE "$pattern" "$f")
    if [ -z "$hits" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf '%s\n' "$hits" | sed "s|^|FAIL test_repo: $f:|; s|$| (refers outside the repository)|" >&2
    fi
done < "$list"
rm -f "$list"
[ "$passed" -gt 100 ] || { failed=$((failed + 1)); echo "FAIL test_repo: only $passed files looked at" >&2; }
echo "test_repo: $passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
