#!/usr/bin/env bash
# Configures and builds cutune into build/ (Release). Extra arguments go to CMake's configure
# step, e.g. -DCUTUNE_CUDA=OFF or -DCMAKE_CUDA_ARCHITECTURES=89.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j"$(nproc)"
