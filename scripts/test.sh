#!/usr/bin/env bash
# The test suite: install what is missing, build, and run every test through ctest. CUDA tests
# skip, saying so, where no GPU is present. Run whole (no arguments, as CI runs it), it then
# runs scripts/sanitize-and-fuzz.sh: part of the suite under ASan+UBSan and every fuzzer for
# 30 s (about 10 more minutes). CUTUNE_SANITIZE_CI=0 skips that, =1 runs it after a partial run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
(cd build && ctest --output-on-failure --timeout 900 "$@")
if [ "${CUTUNE_SANITIZE_CI:-$(($# == 0))}" = 1 ]; then
    ./scripts/sanitize-and-fuzz.sh
fi
