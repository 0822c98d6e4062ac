#!/usr/bin/env bash
# The GPU session's run: build for the H100 (sm_90), the GPU tests in both precisions,
# compute-sanitizer, cutune's benchmark sweep and data-pipeline timing, the same sweep in
# PyTorch, and a summary with the side-by-side table at the end (the device tool returns only
# the last 12,000 characters of output; everything else is in $OUT).
#
# usage: scripts/gpu-run.sh [PHASE ...]           (default: all)
#   build      configure (Release, CUDA architecture 90) and build in build-gpu; incremental
#   tests      ctest -V: the CUDA tests (test_cuda_ops, test_cuda_augment, test_cuda_model,
#              test_cuda_train) at the default TF32, test_cuda_ops and test_cuda_model again at
#              CUTUNE_PRECISION=fp32,
#              and at CUTUNE_PRECISION=bf16 (bf16 activations against the CPU's emulation),
#              then at fp32 with every convolution forced through NCHW (CUTUNE_CONV_LAYOUT),
#              the augment op's host checks (test_augment_op, test_augment_emulated,
#              test_data_augment), the bf16 host checks (test_bf16, test_bf16_emulated) and
#              test_bench_cli
#   conv       the convolution paths only: test_cuda_ops at TF32, test_cuda_ops and
#              test_cuda_model at fp32 (layout routes timed), then fp32 forced through NCHW
#   ctest-all  the whole ctest suite (its CPU tests also run on every CI build)
#   sanitize   compute-sanitizer memcheck on test_cuda_augment, test_cuda_ops, test_cuda_model
#              and one CLI training run of test_cuda_train; racecheck on test_cuda_augment,
#              test_cuda_ops
#   bench      cutune bench --sweep --device cuda (TF32, 224x224, head mri; frozen
#              none,1-2,1-3,1-4,all x batch 32,64,128,256), then `cutune bench --data` on
#              generated PNGs with the augmentation in the loader threads and on the device
#   pytorch    bench/pytorch_vgg16.py: the same sweep in bf16 (AMP) and TF32, then a
#              torch.compile subset while time is left; the side-by-side table
#   compile    bench/pytorch_vgg16.py with torch.compile, bf16, no freezing and blocks 1-4
#              frozen, batch 128 (pytorch runs it too when time is left)
#   dist       one rank through NCCL (world size 1, `cutune bench --gpus 1`) against the
#              single-GPU path, alternating, bf16 224x224 batch 64: the step times side by side;
#              then `cutune train --gpus 1` on generated data, and `cutune devices --gpus 1`
#   all        build tests sanitize bench pytorch, in that order
#
# The device tool allows 600 s per command. BUDGET_S (default 560) is shared by the phases of
# one call: each command runs under `timeout` with what is left, and a phase that no longer
# fits is reported as skipped, to run in the next call. build-gpu stays on the machine while it
# is warm (30 s after a call), and `build` is incremental, so a follow-up call costs little when
# made at once. With all phases, expect two or three calls, e.g.
#   scripts/gpu-run.sh build tests sanitize  ;  scripts/gpu-run.sh build bench pytorch
#
# Dependencies: the machine has the CUDA toolkit and PyTorch (whose wheels carry cuDNN and, if
# the toolkit lacks them, cuBLAS) but no apt and no network. The Debian packages cutune needs
# come in .deps/ (git-ignored; made by scripts/gpu-deps.sh on a machine with apt, carried with
# the call) and are unpacked into a private prefix, never into /.
#
# PRECISIONS (default "bf16 tf32") limits the bench and pytorch phases to some precisions;
# SWEEP_FREEZE (e.g. none,1-4) narrows both sweeps' freeze depths.
# BENCH_DATA=0 skips the data-pipeline timing, PROFILE=0 the per-layer profiles; SWEEP_BATCH
# (e.g. 64,128) narrows both sweeps' batch sizes.
#
# Files in $OUT (default ./gpu-out; the device tool brings back at most 8): summary.md,
# build.log, tests.log, sanitize.log, bench.log, pytorch.log, tables.md.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
: >"$out/tables.md"
budget=${BUDGET_S:-560}
precisions=${PRECISIONS:-bf16 tf32}
t_start=$SECONDS
build=$root/build-gpu
jobs=$(nproc)

phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(all)
expanded=()
for p in "${phases[@]}"; do
    case $p in
    all) expanded+=(build tests sanitize bench pytorch) ;;
    build | tests | conv | ctest-all | sanitize | bench | pytorch | compile | dist)
        expanded+=("$p") ;;
    *) echo "gpu-run: unknown phase '$p' (build tests conv ctest-all sanitize bench pytorch" \
            "compile dist all)" >&2
       exit 2 ;;
    esac
done

left() { echo $((budget - (SECONDS - t_start))); }
# Seconds a command may still take: what is left, less a margin for the summary.
limit() {
    local l=$(($(left) - 20))
    echo $((l > 10 ? l : 10))
}
note() { echo "gpu-run [$((SECONDS - t_start)) s]: $*"; }

summary_rows=()
summary_notes=()

# ---- environment ---------------------------------------------------------------------------

prefix=/tmp/cutune-prefix
arch=x86_64-linux-gnu
mkdir -p "$prefix"
if ls .deps/*.deb >/dev/null 2>&1; then
    for f in .deps/*.deb; do dpkg -x "$f" "$prefix"; done
else
    summary_notes+=("no .deps/*.deb: carry .deps (scripts/gpu-deps.sh makes it); trying system libraries")
fi

# First match of a file name under the usual places, then anywhere.
find_one() {
    local name=$1 hit
    shift
    hit=$(find "$@" -name "$name" 2>/dev/null | head -1)
    [ -z "$hit" ] && hit=$(find / -xdev \( -path /proc -o -path /sys -o -path "$root" \) -prune \
                               -o -name "$name" -print 2>/dev/null | head -1)
    echo "$hit"
}
# PyTorch's wheels (nvidia-cudnn-cu13, nvidia-cublas) live under site-packages/nvidia: searched
# before the slow scan of the whole file system.
wheels=$(python3 -c 'import os, nvidia; print(os.path.dirname(list(nvidia.__path__)[0]))' \
         2>/dev/null)/nvidia
[ -d "$wheels" ] || wheels=/nonexistent
cudnn_lib=$(find_one 'libcudnn.so*' /usr/local/cuda/lib64 /usr/lib/$arch "$wheels")
cudnn_inc=$(find_one cudnn.h /usr/local/cuda/include /usr/include "$wheels")
mkdir -p "$prefix/cudnn" "$prefix/cublas"
cmake_extra=()
if [ -n "$cudnn_lib" ] && [ -n "$cudnn_inc" ]; then
    # find_library wants libcudnn.so; the wheels ship only libcudnn.so.9.
    ln -sf "$cudnn_lib" "$prefix/cudnn/libcudnn.so"
    cmake_extra+=(-DCUDNN_INCLUDE_DIR="$(dirname "$cudnn_inc")" -DCUDNN_LIBRARY="$prefix/cudnn/libcudnn.so")
else
    summary_notes+=("cuDNN not found (library '$cudnn_lib', header '$cudnn_inc')")
fi
# NCCL: the header to build (libnccl.so.2 is loaded at run time, found on LD_LIBRARY_PATH): the
# toolkit's, else PyTorch's wheel (nvidia-nccl).
nccl_lib=$(find_one 'libnccl.so.2*' /usr/local/cuda/lib64 /usr/lib/$arch "$wheels")
nccl_inc=$(find_one nccl.h /usr/local/cuda/include /usr/include "$wheels")
if [ -n "$nccl_lib" ] && [ -n "$nccl_inc" ]; then
    cmake_extra+=(-DNCCL_INCLUDE_DIR="$(dirname "$nccl_inc")")
    nccl_dir=$(dirname "$nccl_lib")
else
    summary_notes+=("NCCL not found (library '$nccl_lib', header '$nccl_inc'): no dist phase")
fi
cuda_lib=$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64
lib_dirs="$prefix/usr/lib/$arch:$prefix/usr/lib/$arch/openblas-openmp:$(dirname "${cudnn_lib:-/x/x}")"
lib_dirs="$lib_dirs:${nccl_dir:-/nonexistent}"
# cuBLAS: the toolkit's own, else PyTorch's wheel (FindCUDAToolkit takes the two paths given).
if [ ! -e "$cuda_lib/libcublas.so" ]; then
    for l in cublas cublasLt; do
        f=$(find_one "lib$l.so.*" /usr/local/cuda/lib64 "$wheels")
        if [ -n "$f" ]; then
            ln -sf "$f" "$prefix/cublas/lib$l.so"
            cmake_extra+=("-DCUDA_${l}_LIBRARY=$prefix/cublas/lib$l.so")
            lib_dirs="$lib_dirs:$(dirname "$f")"
        fi
    done
fi
# Last on the path: runtime libraries the unpacked packages need that this image lacks, taken
# from .deps/fallback (scripts/gpu-deps.sh) one name at a time, so the image's own copies win
# wherever it has them. ld also reads LD_LIBRARY_PATH for the needs of shared libraries, so the
# build links against these too.
fallback_root=/tmp/cutune-fallback
fallback_lib=$prefix/fallback-lib
mkdir -p "$fallback_root" "$fallback_lib"
if ls .deps/fallback/*.deb >/dev/null 2>&1; then
    for f in .deps/fallback/*.deb; do dpkg -x "$f" "$fallback_root"; done
fi
export LD_LIBRARY_PATH="$lib_dirs:${LD_LIBRARY_PATH:-}:$fallback_lib"
link_missing_libraries() {
    local round name src added missing=""
    for round in 1 2 3 4 5 6 7 8; do
        missing=$(find "$prefix/usr/lib" "$fallback_lib" -name '*.so*' 2>/dev/null |
                  xargs -r ldd 2>/dev/null | awk '/not found/ { print $1 }' | sort -u)
        [ -z "$missing" ] && return 0
        added=0
        for name in $missing; do
            src=$(find "$fallback_root" -name "$name" 2>/dev/null | head -1)
            if [ -n "$src" ] && [ ! -e "$fallback_lib/$name" ]; then
                ln -sf "$(readlink -f "$src")" "$fallback_lib/$name"
                added=1
            fi
        done
        [ $added -eq 0 ] && break
    done
    summary_notes+=("libraries missing on this image and in .deps/fallback: $(echo $missing)")
    return 1
}
link_missing_libraries
fallback_used=$(ls "$fallback_lib" 2>/dev/null | tr '\n' ' ')
{
    echo "# gpu-run $(date -u +%Y-%m-%dT%H:%MZ): phases ${expanded[*]}"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
    nvcc --version 2>&1 | tail -1
    echo "cuDNN: $cudnn_lib ($cudnn_inc)"
    echo "libraries taken from .deps/fallback: ${fallback_used:-none}"
    python3 -c 'import torch, torchvision as tv; print("torch", torch.__version__,
                "torchvision", tv.__version__)' 2>&1 | tail -1
    echo '```'
} >"$out/summary.md"
note "device: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1 | head -1)"

# ---- phases --------------------------------------------------------------------------------

phase_build() {
    {
        timeout -k 5 "$(limit)" cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_PREFIX_PATH="$prefix/usr" -DCMAKE_CUDA_ARCHITECTURES=90 "${cmake_extra[@]}" &&
            timeout -k 5 "$(limit)" cmake --build "$build" -j"$jobs"
    } >"$out/build.log" 2>&1
    local rc=$?
    grep -E "cutune:|warning|error" "$out/build.log" | head -20
    [ $rc -eq 0 ] && "$build/cutune" devices 2>&1 | tee -a "$out/build.log"
    return $rc
}

phase_tests() {
    local rc=0
    : >"$out/tests.log"
    (cd "$build" && timeout -k 5 "$(limit)" ctest -V --timeout 900 \
        -R 'test_cuda_|augment|bench_cli|bf16') >>"$out/tests.log" 2>&1 || rc=$?
    echo "===== CUTUNE_PRECISION=fp32 =====" >>"$out/tests.log"
    (cd "$build" && CUTUNE_PRECISION=fp32 timeout -k 5 "$(limit)" ctest -V --timeout 900 \
        -R 'test_cuda_(ops|model)') >>"$out/tests.log" 2>&1 || rc=$?
    echo "===== CUTUNE_PRECISION=bf16 =====" >>"$out/tests.log"
    (cd "$build" && CUTUNE_PRECISION=bf16 timeout -k 5 "$(limit)" ctest -V --timeout 900 \
        -R 'test_cuda_(ops|model)') >>"$out/tests.log" 2>&1 || rc=$?
    tests_nchw || rc=$?
    grep -E "% tests passed|\(Failed\)|\(Skipped\)|Not Run" "$out/tests.log" | sed 's/^/    /'
    return $rc
}

# fp32 with every convolution forced through NCHW copies (the layout route fp32 runs take where
# it times faster); the conv log shows that the route was really taken.
tests_nchw() {
    local rc=0 nchw_log="$out/tests-nchw.log" n_nchw
    echo "===== CUTUNE_PRECISION=fp32 CUTUNE_CONV_LAYOUT=nchw =====" >>"$out/tests.log"
    (cd "$build" && CUTUNE_PRECISION=fp32 CUTUNE_CONV_LAYOUT=nchw CUTUNE_CONV_LOG=1 \
        timeout -k 5 "$(limit)" ctest -V --timeout 900 -R 'test_cuda_(ops|model)') \
        >"$nchw_log" 2>&1 || rc=$?
    grep -v "cutune: conv " "$nchw_log" >>"$out/tests.log"
    n_nchw=$(grep -c "float32 NCHW" "$nchw_log")
    echo "    NCHW-forced fp32 run: $n_nchw NCHW algorithm choices in the conv log"
    [ "$n_nchw" -gt 0 ] || rc=1
    rm -f "$nchw_log"
    return $rc
}

# The convolution paths only: test_cuda_ops at the default TF32, test_cuda_ops and
# test_cuda_model at fp32 (routes chosen by timing), then fp32 forced through NCHW.
phase_conv() {
    local rc=0
    : >"$out/tests.log"
    (cd "$build" && timeout -k 5 "$(limit)" ctest -V --timeout 900 -R 'test_cuda_ops') \
        >>"$out/tests.log" 2>&1 || rc=$?
    echo "===== CUTUNE_PRECISION=fp32 =====" >>"$out/tests.log"
    (cd "$build" && CUTUNE_PRECISION=fp32 CUTUNE_CONV_LOG=1 timeout -k 5 "$(limit)" \
        ctest -V --timeout 900 -R 'test_cuda_(ops|model)') >>"$out/tests.log" 2>&1 || rc=$?
    echo "    fp32 route decisions (conv log):"
    grep -oE "(through NCHW|NHWC) \((NHWC|NCHW)" "$out/tests.log" | cut -d' ' -f1-2 | sort |
        uniq -c | sed 's/^/    /'
    tests_nchw || rc=$?
    grep -E "% tests passed|\(Failed\)|\(Skipped\)|Not Run" "$out/tests.log" | sed 's/^/    /'
    return $rc
}

phase_ctest_all() {
    (cd "$build" && timeout -k 5 "$(limit)" ctest -j4 --timeout 900 --output-on-failure) \
        >>"$out/tests.log" 2>&1
    local rc=$?
    grep -E "% tests passed|\(Failed\)" "$out/tests.log" | tail -3 | sed 's/^/    /'
    return $rc
}

phase_sanitize() {
    local rc=0 tool prog r
    : >"$out/sanitize.log"
    # tool:program[:criterion filter]; the train test runs the CLI in child processes, which
    # --target-processes all follows, so the streamed training step and streamed predictions
    # (with the on-device TTA flips) are checked too.
    # test_cuda_ops's out-of-memory case asks cudaMalloc for 1 PiB on purpose, which memcheck
    # reports as an API error; it runs everywhere else.
    for run in memcheck:test_cuda_augment \
               'memcheck:test_cuda_ops:!(cuda_ops/alloc_is_zero_filled*)' \
               racecheck:test_cuda_augment racecheck:test_cuda_ops memcheck:test_cuda_model \
               'memcheck:test_cuda_train:cuda_train/streamed_*'; do
        tool=${run%%:*}
        prog=${run#*:}
        filter=
        case $prog in *:*) filter=${prog#*:}; prog=${prog%%:*} ;; esac
        if [ "$(left)" -lt 60 ]; then
            echo "    $tool $prog: skipped (time)"
            summary_notes+=("sanitize: $tool $prog skipped for time")
            rc=124
            continue
        fi
        echo "===== $tool $prog =====" >>"$out/sanitize.log"
        CUTUNE_CLI="$build/cutune" CUTUNE_FIXTURES="$PWD/tests/fixtures" \
        timeout -k 5 "$(limit)" compute-sanitizer --tool "$tool" --target-processes all \
            --error-exitcode 9 --print-limit 20 "$build/tests/$prog" --jobs 1 \
            ${filter:+--filter "$filter"} >>"$out/sanitize.log" 2>&1
        r=$?
        echo "    $tool $prog: exit $r ($(grep -c 'ERROR SUMMARY: 0 errors' "$out/sanitize.log") clean summaries so far)"
        [ $r -ne 0 ] && rc=$r
    done
    return $rc
}

# Class folders of 256x256 PNGs (smooth shapes plus noise, so they compress like photographs
# rather than like noise) for `cutune bench --data`.
make_png_folders() {
    python3 - "$1" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
root = sys.argv[1]
rng = np.random.default_rng(1)
yy, xx = np.mgrid[0:256, 0:256]
for k, cls in enumerate(["class_a", "class_b"]):
    os.makedirs(os.path.join(root, cls), exist_ok=True)
    for i in range(320):
        cx, cy, r = rng.uniform(60, 196, 2).tolist() + [rng.uniform(20, 70)]
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r) * (80 + 80 * k)
        img = np.stack([disc + xx // 2, disc + yy // 2, disc + 40], -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(root, cls, f"{i:04d}.png"))
EOF
}

phase_bench() {
    local rc=0 table=/tmp/cutune-sweep.md data=/tmp/cutune-bench-png on result
    : >"$out/bench.log"
    # bf16 first: it is the precision the PyTorch comparison (AMP bf16) is about. The sweep's
    # stderr (in bench.log) lists each convolution's chosen cuDNN algorithms and any faster one
    # the workspace cap ruled out (CUTUNE_CONV_LOG).
    for prec in $precisions; do
        if [ "$(left)" -lt 120 ]; then
            summary_notes+=("bench --sweep --precision $prec skipped for time")
            continue
        fi
        CUTUNE_CONV_LOG=1 timeout -k 5 "$(limit)" "$build/cutune" bench --sweep --device cuda --head mri \
            --precision "$prec" ${SWEEP_BATCH:+--sweep-batch "$SWEEP_BATCH"} \
            ${SWEEP_FREEZE:+--sweep-freeze "$SWEEP_FREEZE"} >"$table" 2>>"$out/bench.log" || rc=$?
        cat "$table" >>"$out/bench.log"
        grep -q '^| cutune' "$table" && cat "$table" >>"$out/tables.md"
        [ $rc -ne 0 ] && summary_notes+=("bench --sweep --precision $prec: exit $rc: $(grep 'cutune bench' "$out/bench.log" | tail -1)")
        grep -E '^\| cutune' "$table" | head -3 | sed 's/^/    /'
    done
    # Where the time goes, layer by layer: full fine-tuning at batch 64.
    for prec in $precisions; do
        [ "$(left)" -lt 150 ] || [ "${PROFILE:-1}" = 0 ] && break
        echo "===== bench --profile --precision $prec =====" >>"$out/bench.log"
        timeout -k 5 "$(limit)" "$build/cutune" bench --device cuda --input-size 224 \
            --batch-size 64 --steps 10 --warmup 3 --head mri --precision "$prec" --profile \
            >/tmp/cutune-profile.log 2>&1 || rc=$?
        cat /tmp/cutune-profile.log >>"$out/bench.log"
        { echo; echo "### per-layer profile, $prec, batch 64, full fine-tuning"; echo
          grep -E '^\| ' /tmp/cutune-profile.log; echo; } >>"$out/tables.md"
    done
    [ "${BENCH_DATA:-1}" = 0 ] && return $rc
    if [ "$(left)" -lt 90 ]; then
        summary_notes+=("bench --data skipped for time")
        return 124
    fi
    [ -d "$data" ] || make_png_folders "$data" >>"$out/bench.log" 2>&1
    for on in loader device; do
        echo "===== bench --data, augmentation on the $on =====" >>"$out/bench.log"
        timeout -k 5 "$(limit)" "$build/cutune" bench --device cuda --data "$data" --input-size 224 \
            --batch-size 64 --steps 20 --warmup 3 --freeze-to block4_pool --workers "$jobs" \
            --augment-on "$on" >/tmp/cutune-data.log 2>&1 || rc=$?
        cat /tmp/cutune-data.log >>"$out/bench.log"
        result=$(grep -E 'median step|cutune bench:' /tmp/cutune-data.log | tail -1)
        summary_notes+=("bench --data (frozen 1-4, batch 64, 640 PNGs, augment on the $on): $result")
    done
    return $rc
}

pytorch_compile() {
    PYTHONUNBUFFERED=1 timeout -k 5 "$(limit)" python3 bench/pytorch_vgg16.py --precision bf16 \
        --compile --sweep-freeze none,1-4 --sweep-batch 128 --head mri --out "$1" \
        >>"$out/pytorch.log" 2>&1 || summary_notes+=("torch.compile subset: exit $?")
}

phase_compile() {
    local t=/tmp/pytorch-compile.md
    rm -f "$t"
    pytorch_compile "$t"
    [ -f "$t" ] && cat "$t" >>"$out/tables.md"
    grep -E '^\| pytorch' "$t" 2>/dev/null | sed 's/^/    /'
    [ -f "$t" ]
}

phase_pytorch() {
    local rc=0 t=/tmp/pytorch-sweep.md
    : >"$out/pytorch.log"
    rm -f "$t"
    PYTHONUNBUFFERED=1 timeout -k 5 "$(limit)" python3 bench/pytorch_vgg16.py \
        --precision "$(echo $precisions | tr ' ' ,)" \
        ${SWEEP_BATCH:+--sweep-batch "$SWEEP_BATCH"} ${SWEEP_FREEZE:+--sweep-freeze "$SWEEP_FREEZE"} \
        --head mri --out "$t" >>"$out/pytorch.log" 2>&1 || rc=$?
    # torch.compile recompiles per configuration (tens of seconds each): a subset, if time allows
    # (the compile phase runs it on its own).
    if [ $rc -eq 0 ] && [ "$(left)" -gt 240 ]; then
        pytorch_compile "$t"
    fi
    [ $rc -ne 0 ] && summary_notes+=("pytorch: exit $rc: $(tail -1 "$out/pytorch.log")")
    [ -f "$t" ] && cat "$t" >>"$out/tables.md"
    grep -E '^\| pytorch' "$t" 2>/dev/null | head -3 | sed 's/^/    /'
    return $rc
}

# One rank through NCCL against the single-GPU path, alternating so that clocks and heat treat
# both alike; then a training run and the launch check through --gpus 1.
phase_dist() {
    local rc=0 i flags="--device cuda --input-size 224 --batch-size 64 --precision bf16 --steps 30 --warmup 5"
    : >"$out/dist.log"
    for i in 1 2 3; do
        { echo "== single $i"; timeout -k 5 "$(limit)" "$build/cutune" bench $flags
          echo "== nccl $i"; timeout -k 5 "$(limit)" "$build/cutune" bench --gpus 1 $flags
        } >>"$out/dist.log" 2>&1 || rc=$?
    done
    awk '/^== /{ who = $2 } /median step/ && who != "" { print who, $0 }
         /^\| 0 \|/ { print "nccl rank 0:", $0 }' "$out/dist.log" | tee -a "$out/tables.md"
    timeout -k 5 "$(limit)" "$build/cutune" devices --gpus 1 >>"$out/dist.log" 2>&1 || rc=$?
    if [ "$(left)" -gt 90 ]; then
        timeout -k 5 "$(limit)" "$build/cutune" demo --out /tmp/dist-demo --epochs 0 \
            >>"$out/dist.log" 2>&1
        timeout -k 5 "$(limit)" "$build/cutune" train --gpus 1 --data /tmp/dist-demo/data/train \
            --val /tmp/dist-demo/data/val --head mri --weights none --epochs 2 \
            --out /tmp/dist-run >>"$out/dist.log" 2>&1 || rc=$?
        tail -3 "$out/dist.log"
    fi
    return $rc
}

for p in "${expanded[@]}"; do
    # The least time a phase needs to be worth starting.
    case $p in
    build) need=60 ;; tests) need=120 ;; conv) need=60 ;;
    ctest-all) need=240 ;; sanitize) need=120 ;;
    bench) need=180 ;; pytorch) need=150 ;; compile) need=120 ;; dist) need=120 ;;
    esac
    if [ "$(left)" -lt "$need" ]; then
        summary_rows+=("| $p | skipped: $(left) s left, needs about $need s | 0 |")
        note "$p skipped ($(left) s left)"
        continue
    fi
    if [ "$p" != build ] && [ "$p" != compile ] && [ ! -x "$build/cutune" ]; then
        summary_rows+=("| $p | skipped: no build (run the build phase) | 0 |")
        continue
    fi
    note "$p ..."
    t0=$SECONDS
    case $p in
    ctest-all) phase_ctest_all ;;
    *) "phase_$p" ;;
    esac
    rc=$?
    case $rc in
    0) status=ok ;;
    124 | 137) status="timed out (budget)" ;;
    *) status="failed (exit $rc)" ;;
    esac
    summary_rows+=("| $p | $status | $((SECONDS - t0)) |")
    note "$p: $status"
done

# ---- summary -------------------------------------------------------------------------------

{
    echo
    echo "| phase | result | seconds |"
    echo "|---|---|---|"
    printf '%s\n' "${summary_rows[@]}"
    echo
    for n in "${summary_notes[@]}"; do echo "- $n"; done
    if [ -s "$out/tests.log" ]; then
        echo
        echo "Tests (tests.log):"
        # ctest -V prefixes each line of a test's output with the test's number.
        grep -E "\[====\] Synthesis|% tests passed|\(Failed\)" "$out/tests.log" | sed 's/^/    /'
        # The model test's error closest to its limit, per precision.
        awk '/\[(tf32|fp32|bf16)\].*\|gpu - cpu\| \/ \|cpu\| = / {
                 p = ($0 ~ /\[fp32\]/) ? "fp32" : ($0 ~ /\[bf16\]/) ? "bf16" : "tf32"
                 v = $0; sub(/.*\|cpu\| = /, "", v); lim = v; sub(/.*limit /, "", lim)
                 r = (lim + 0 > 0) ? (v + 0) / (lim + 0) : 0
                 if (!(p in worst) || r > worst[p]) { worst[p] = r; what[p] = $0 } }
             END { for (p in worst)
                     printf "    model test, %s: closest to its limit (%.0f%%): %s\n", p,
                            100 * worst[p], what[p] }' "$out/tests.log" | cut -c1-220
        grep -E "mismatches" "$out/tests.log" | awk '{ s += ($0 ~ / 0 mismatches/) ? 0 : 1 } END {
            printf "    augment cases with mismatches: %d of %d\n", s, NR }'
    fi
    if [ -s "$out/sanitize.log" ]; then
        echo
        echo "compute-sanitizer (sanitize.log):"
        grep -E "^=====|ERROR SUMMARY" "$out/sanitize.log" | sort | uniq -c | sed 's/^/    /' | head -20
    fi
    if [ -s "$out/tables.md" ]; then
        echo
        cat "$out/tables.md"
        echo
        echo "### side by side (img/s)"
        echo
        python3 bench/compare_tables.py "$out/tables.md" 2>&1
    fi
} >>"$out/summary.md"
cat "$out/summary.md"
