#!/usr/bin/env bash
# The test suite: install what is missing, build, and run every test through ctest. CUDA tests
# skip, saying so, where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
