#!/bin/sh
# The static binary must need nothing from the machine: no program
# interpreter, no shared libraries, and (as root) it must run in an empty
# chroot that holds only itself.
set -e
bin=${1:-./gemma4-static}
if readelf -l "$bin" | grep -q INTERP || readelf -d "$bin" | grep -q NEEDED; then
    echo "static_smoke: $bin is dynamically linked"; exit 1
fi
root=$(mktemp -d)
cp "$bin" "$root/gemma4"
if [ "$(id -u)" = 0 ]; then
    chroot "$root" /gemma4 mkmodel --preset tiny-dense -o /m.gguf
    chroot "$root" /gemma4 run -m /m.gguf -p "hello" -n 8 --seed 1 > "$root/out.txt"
else
    (cd "$root" && env -i ./gemma4 mkmodel --preset tiny-dense -o m.gguf && env -i ./gemma4 run -m m.gguf -p hello -n 8 --seed 1 > out.txt)
fi
test -s "$root/out.txt"
rm -rf "$root"
echo "static_smoke: $bin runs with nothing installed"
