#!/usr/bin/env bash
# The sanitizer and fuzzing checks, which scripts/test.sh runs after the test suite:
#   sanitize  a gcc build with AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer
#             (CUTUNE_SANITIZE=ON, CPU only) in build-asan/, and the tests that read files,
#             parse input and take error paths run under it (CUTUNE_SANITIZE_TESTS, below);
#   fuzz      the libFuzzer harnesses of tests/fuzz/ built with clang in build-fuzz/, their seeds
#             made by tests/fuzz/make_corpus.py, the known libhdf5 reproducers run through the
#             HDF5 harnesses, then every harness fuzzed for FUZZ_SECONDS (30) from its seeds.
# Any sanitizer report in cutune's code, crash, leak or timeout fails the script. libhdf5's own
# known findings are listed, with their reproducers, in tests/fuzz/lsan.supp.
#   scripts/sanitize-and-fuzz.sh [sanitize] [fuzz]     (no argument: both)
# As root it installs what it needs (clang, libFuzzer, OpenMP for clang, llvm-symbolizer, h5py),
# as scripts/install-deps.sh does; otherwise it prints the apt-get line.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
parts=${*:-sanitize fuzz}
fuzz_seconds=${FUZZ_SECONDS:-30}
# The sanitized tests: data, image, JSON, weights and checkpoint reading, the CLI's argument and
# config handling, downloads, the public API, one training step of every op against PyTorch's,
# and training's error paths - about 5 minutes under the sanitizers on 2 cores. The long
# end-to-end training runs (train_cli, train_resume, folds, run_folder, model, backbones, bf16,
# bench_cli: 10 more minutes) repeat the kernels those cover and stay in the normal suite. "all"
# runs everything that can run sanitized: not install_example and the Python tests, which load
# the library into programs built without the sanitizer runtime.
chosen='test_data_.*|test_cli|test_rng|test_ops_cpu|test_augment_op|test_weights.*|test_checkpoint'
chosen+='|test_download|test_api|test_golden|test_train_parts|test_advise|test_train_errors'
chosen+='|test_rendezvous|test_world|test_buckets'  # what the network and the launcher hand in
select=(-R "${CUTUNE_SANITIZE_TESTS:-^($chosen|man_completion)\$}")
[ "${CUTUNE_SANITIZE_TESTS:-}" = all ] && select=(-E '^(install_example|python_.*)$')

./scripts/install-deps.sh
need=(clang libclang-rt-dev libomp-dev llvm python3-h5py python3-pil)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "sanitize-and-fuzz: missing packages; install them with:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "sanitize-and-fuzz: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export LSAN_OPTIONS="suppressions=$root/tests/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
symbolizer=$(command -v llvm-symbolizer || ls /usr/lib/llvm-*/bin/llvm-symbolizer 2>/dev/null |
             tail -n 1 || true)
[ -n "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH="$symbolizer"
jobs=$(nproc)

# Whether a sanitizer report is libhdf5's own: the innermost frame outside the sanitizer runtime
# (its allocator included) and libc of its first stack, and of the stack that allocated the
# memory when it names one, lie in libhdf5 (a buffer cutune allocated and libhdf5 overran is
# cutune's). tests/fuzz/fuzz_util.c classifies the fuzzers' reports the same way.
hdf5s_own() {
    awk '/allocated by thread/ { stack = 1 }
         /^ +#[0-9]+ 0x/ && !seen[stack + 0] &&
         $0 !~ /__asan|__interceptor|__sanitizer|lib(asan|ubsan|c)\.so/ &&
         $0 !~ / in (malloc|calloc|realloc|free) / {
             seen[stack + 0] = 1; hdf5[stack + 0] = $0 ~ /libhdf5| in H5/ }
         END { exit !(seen[0] && hdf5[0] && (!seen[1] || hdf5[1])) }' "$1"
}

run_sanitize() {
    local start=$SECONDS
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DCUTUNE_CUDA=OFF -DCUTUNE_SANITIZE=ON \
          -DCUTUNE_BENCH=OFF >/dev/null
    cmake --build build-asan -j"$jobs"
    # Reports go to files, so that none is lost where a test discards a command's output or a
    # child process (cutune's HDF5 probe) prints it. abort_on_error: the probe's child then dies
    # of SIGABRT on libhdf5's known overflow and cutune refuses the file, as it does unsanitized.
    local logs
    logs=$(mktemp -d /tmp/cutune-sanitize-XXXXXX)
    local status=0
    ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:log_path=$logs/asan" \
        UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$logs/ubsan" \
        ctest --test-dir build-asan --output-on-failure --timeout 900 "${select[@]}" || status=1
    for report in "$logs"/*; do
        [ -e "$report" ] || continue
        if hdf5s_own "$report"; then
            echo "sanitize: libhdf5's own (tests/fuzz/lsan.supp): $(grep -m 1 ERROR "$report")"
        else
            echo "sanitize: a report in cutune's code ($report):"
            cat "$report"
            status=1
        fi
    done
    rm -rf "$logs"
    echo "sanitize: $((SECONDS - start)) s"
    return $status
}

# One harness for FUZZ_SECONDS from its seeds and corpus; its log and exit status are left in
# build-fuzz/findings/KIND.log and KIND.status.
fuzz_one() {
    local h=$1 kind=${1#fuzz_} opts=(-timeout=25)
    case $kind in
        weights|checkpoint) opts=(-timeout=60 -rss_limit_mb=4096) ;;
        config) opts+=(-close_fd_mask=2) ;; # the command's messages about bad lines
    esac
    mkdir -p "build-fuzz/corpus/$kind"
    local rc=0
    "build-fuzz/tests/fuzz/$h" "${opts[@]}" -max_total_time="$fuzz_seconds" \
        -print_final_stats=1 -artifact_prefix="build-fuzz/findings/$kind-" \
        "build-fuzz/corpus/$kind" "build-fuzz/seeds/$kind" >"build-fuzz/findings/$kind.log" 2>&1 ||
        rc=$?
    echo "$rc" >"build-fuzz/findings/$kind.status"
}

run_fuzz() {
    local start=$SECONDS
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DCUTUNE_CUDA=OFF \
          -DCUTUNE_FUZZ=ON -DCUTUNE_TESTS=OFF -DCUTUNE_BENCH=OFF >/dev/null
    local harnesses=(fuzz_image fuzz_iceberg fuzz_config fuzz_weights fuzz_checkpoint)
    cmake --build build-fuzz -j"$jobs" --target "${harnesses[@]}" cutune_cli
    python3 tests/fuzz/make_corpus.py --cutune build-fuzz/cutune --out build-fuzz/seeds
    rm -rf build-fuzz/findings
    mkdir -p build-fuzz/findings
    # libhdf5's known crash, hang and huge allocation: skipped or refused, never a failure.
    local h status=0
    for h in fuzz_weights fuzz_checkpoint; do
        "build-fuzz/tests/fuzz/$h" -timeout=60 -artifact_prefix=build-fuzz/findings/ \
            tests/fuzz/hdf5_bugs/* || status=1
    done
    # The harnesses, as many at a time as there are cores.
    echo "fuzz: ${harnesses[*]}, ${fuzz_seconds} s each"
    for h in "${harnesses[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
        fuzz_one "$h" &
    done
    wait
    for h in "${harnesses[@]}"; do
        local kind=${h#fuzz_}
        if [ "$(cat "build-fuzz/findings/$kind.status")" != 0 ]; then
            echo "fuzz: $h failed; its log (build-fuzz/findings/$kind.log) ends:"
            tail -n 60 "build-fuzz/findings/$kind.log"
            status=1
        else
            echo "fuzz: $h: $(grep -E '^#[0-9]+[[:space:]]+DONE' "build-fuzz/findings/$kind.log")"
            grep 'fuzz_h5_input' "build-fuzz/findings/$kind.log" || true
        fi
    done
    echo "fuzz: $((SECONDS - start)) s"
    return $status
}

status=0
for part in $parts; do
    case $part in
        sanitize) run_sanitize || status=1 ;;
        fuzz) run_fuzz || status=1 ;;
        *) echo "usage: $0 [sanitize] [fuzz]" >&2; exit 2 ;;
    esac
done
exit $status
