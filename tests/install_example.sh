#!/bin/sh
# examples/finetune.c built against an installed copy of this build, as a user builds it: with
# CMake's find_package(cutune) and with pkg-config, each then run end to end (fine-tune on two
# class folders, predict one image) on the CPU. Also checks that the shared library exports the
# public API and nothing else.
#   install_example.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
src=$2
work=$(mktemp -d /tmp/cutune_install_XXXXXX)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
pc=$(dirname "$(find "$work/prefix" -name cutune.pc | head -n 1)")
lib=$(dirname "$pc")
test -x "$work/prefix/bin/cutune" || { echo "no cutune under $work/prefix/bin"; exit 1; }

# Two classes of the fixture images, resized by the loader.
mkdir -p "$work/data/cat" "$work/data/dog"
for f in rgb420.jpg rgb444_progressive.jpg; do
    cp "$src/tests/fixtures/data/$f" "$work/data/cat/$f"
done
for f in grey.jpg cmyk.jpg; do
    cp "$src/tests/fixtures/data/$f" "$work/data/dog/$f"
done
settings="epochs=2 input-size=32 batch-size=2 weights=none device=cpu threads=1 verbose=0"

cmake -S "$src/examples" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/finetune" "$work/data" "$work/run_cmake" "$work/data/cat/rgb420.jpg" $settings \
    >"$work/out_cmake.txt"
cat "$work/out_cmake.txt"
grep -q "^epoch 2/2: loss" "$work/out_cmake.txt"
grep -q "^cat: " "$work/out_cmake.txt"
grep -q "^dog: " "$work/out_cmake.txt"
test -f "$work/run_cmake/final.h5"

flags=$(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs cutune)
cc -std=c11 -Wall -Wextra -Werror "$src/examples/finetune.c" $flags -Wl,-rpath,"$lib" \
    -o "$work/finetune_pc"
"$work/finetune_pc" "$work/data" "$work/run_pc" "$work/data/dog/grey.jpg" $settings \
    >"$work/out_pc.txt"
grep -q "^dog: " "$work/out_pc.txt"
# The same settings, the same run: the two builds agree to the last digit.
test "$(grep '^epoch' "$work/out_cmake.txt")" = "$(grep '^epoch' "$work/out_pc.txt")"

# The shared library exports the functions of include/cutune/ and nothing else.
nm -D --defined-only "$lib/libcutune.so" | awk '$2 ~ /^[TW]$/ {print $3}' | sort >"$work/exported"
cat "$src"/include/cutune/*.h | tr -s ' \n' ' ' | grep -o 'CT_API [^;]*' |
    grep -o 'ct_[a-z0-9_]*(' | tr -d '(' | sort -u >"$work/declared"
if ! diff "$work/declared" "$work/exported"; then
    echo "libcutune.so's exports differ from the CT_API declarations (< declared, > exported)"
    exit 1
fi
echo "install_example: find_package and pkg-config builds ran; $(wc -l <"$work/exported") functions exported"
