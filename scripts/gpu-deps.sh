#!/usr/bin/env bash
# Downloads, on a machine with apt, the Debian packages cutune needs on a GPU machine that has the
# CUDA toolkit but no apt and no network: they land in .deps/ (git-ignored) and
# scripts/gpu-run.sh unpacks them into a private prefix there (never into /).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps
pkgs=(libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0
      libcriterion3 libcriterion-dev libboxfort-dev libnanomsg5 libgit2-1.5 libmbedtls14
      libmbedx509-1 libmbedcrypto7 libhttp-parser2.9 libssh2-1
      libhdf5-103-1 libhdf5-hl-100 libhdf5-dev libaec0 libsz2
      libpng16-16 libpng-dev libjpeg62-turbo libjpeg62-turbo-dev libcjson1 libcjson-dev)
[ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || apt-get update -qq
(cd .deps && apt-get download -qq "${pkgs[@]}")
du -sh .deps
