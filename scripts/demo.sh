#!/usr/bin/env bash
# The main job: install what is missing, build, and run `cutune demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
exec ./build/cutune demo "$@"
