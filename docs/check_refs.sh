#!/bin/sh
# Checks the code references of docs/architecture.md: every `file:function`
# names a file that exists and a function defined in it (a line starting in
# column 0 with the name followed by '(' that is not a prototype), and every
# `path.c` / `path.h` quoted alone exists. Also checks that the section
# numbers the code cites as "docs/architecture.md §N" exist as headings.
# Run from anywhere: sh docs/check_refs.sh
cd "$(dirname "$0")/.." || exit 2
doc=docs/architecture.md
fail=0 n=0

for ref in $(grep -oE '`[A-Za-z0-9_./-]+\.[ch]:[A-Za-z_][A-Za-z0-9_]*`' "$doc" | tr -d '`' | sort -u); do
    file=${ref%%:*} fn=${ref#*:}
    n=$((n + 1))
    if [ ! -f "$file" ]; then
        echo "missing file: $ref"; fail=1; continue
    fi
    if ! grep -E "^[A-Za-z_].*[^A-Za-z0-9_]$fn\(|^$fn\(" "$file" | grep -qvE ';[[:space:]]*$'; then
        echo "no definition of $fn in $file"; fail=1
    fi
done

for file in $(grep -oE '`[A-Za-z0-9_./-]+\.[ch]`' "$doc" | tr -d '`' | sort -u); do
    n=$((n + 1))
    [ -f "$file" ] || { echo "missing file: $file"; fail=1; }
done

# Section numbers cited from the code must be headings of the document.
for sec in $(git grep -hoE 'docs/architecture\.md[^§]{0,3}§[0-9]+(\.[0-9]+)?([ ,/and]+§?[0-9]+(\.[0-9]+)?)*' -- \
        '*.c' '*.h' | grep -oE '[0-9]+(\.[0-9]+)?' | sort -u) \
        $(git grep -hoE '§[0-9]+(\.[0-9]+)?' -- gemma4.c | tr -d '§' | sort -u); do
    n=$((n + 1))
    grep -qE "^#+ $sec(\.)? " "$doc" || { echo "section §$sec cited in the code is not a heading"; fail=1; }
done

if [ "$fail" = 0 ]; then echo "docs/check_refs.sh: $n references OK"; else echo "docs/check_refs.sh: FAILED"; fi
exit "$fail"
