#!/usr/bin/env bash
# One full GPU run on a machine with the CUDA toolkit (and PyTorch's cuDNN/cuBLAS wheels) but no
# apt: unpack .deps/ (from scripts/gpu-deps.sh) into a private prefix, build with CUDA for the
# local GPU, run the whole test suite, the CUDA tests under compute-sanitizer, and the
# benchmarks. Logs go to $OUT (or ./gpu-out). Usage: scripts/gpu-run.sh [tests|bench|all]
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
prefix=/tmp/cutune-prefix
arch=x86_64-linux-gnu
mkdir -p "$prefix"
for f in .deps/*.deb; do dpkg -x "$f" "$prefix"; done

# cuDNN and cuBLAS: the toolkit's own, else the ones PyTorch's wheels carry.
cudnn_lib=$(find /usr/local/cuda*/lib* /usr/lib/$arch / -name 'libcudnn.so*' -not -path '*/proc/*' 2>/dev/null | head -1)
cudnn_inc=$(find /usr/local/cuda*/include /usr/include / -name cudnn.h -not -path '*/proc/*' 2>/dev/null | head -1)
[ -n "$cudnn_lib" ] && [ -n "$cudnn_inc" ] || { echo "gpu-run: cuDNN not found" >&2; exit 1; }
# find_library wants libcudnn.so; wheels ship only libcudnn.so.9.
mkdir -p "$prefix/cudnn"
ln -sf "$cudnn_lib" "$prefix/cudnn/libcudnn.so"
cudnn_dir=$(dirname "$cudnn_lib")
echo "gpu-run: cuDNN $cudnn_lib, header $cudnn_inc"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"

export LD_LIBRARY_PATH="$prefix/usr/lib/$arch:$prefix/usr/lib/$arch/openblas-openmp:$cudnn_dir:$(dirname "$(find / -name 'libcublas.so*' -not -path '*/proc/*' 2>/dev/null | head -1)"):${LD_LIBRARY_PATH:-}"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix/usr" \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DCUDNN_INCLUDE_DIR="$(dirname "$cudnn_inc")" \
      -DCUDNN_LIBRARY="$prefix/cudnn/libcudnn.so" 2>&1 | tee "$out/configure.log" | grep -E "cutune|Error"
cmake --build build-gpu -j"$(nproc)" 2>&1 | tee "$out/build.log" | grep -E "error|warning" 
build-gpu/cutune devices | tee "$out/devices.txt"

if [ "$what" = all ] || [ "$what" = tests ]; then
    (cd build-gpu && ctest --output-on-failure --timeout 900 2>&1) | tee "$out/ctest.log" | tail -25
    for tool in memcheck racecheck; do
        compute-sanitizer --tool "$tool" --error-exitcode 9 build-gpu/tests/test_cuda_ops --jobs 1 \
            >"$out/sanitizer-$tool.log" 2>&1
        echo "compute-sanitizer $tool: exit $? ($(grep -c 'ERROR SUMMARY: 0' "$out/sanitizer-$tool.log") clean summaries)"
    done
fi
if [ "$what" = all ] || [ "$what" = bench ]; then
    for f in none block4_pool; do
        build-gpu/cutune bench --device cuda --input-size 224 --batch-size 64 --steps 10 \
            --warmup 3 --freeze-to "$([ $f = none ] && echo '' || echo $f)" 2>&1 | tee -a "$out/bench.log" | tail -2
    done
fi
