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
      libpng16-16 libpng-dev libjpeg62-turbo libjpeg62-turbo-dev libcjson1 libcjson-dev
      libdnnl2 libdnnl-dev                       # the CPU backend's convolutions (oneDNN 2.x)
      libtiff6 libtiff-dev libdeflate0 libjbig0 liblerc4 libwebp7 libstb0 libstb-dev
      libcurl4-openssl-dev libssl-dev)           # downloads and their MD5 check
[ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || apt-get update -qq
(cd .deps && apt-get download -qq "${pkgs[@]}")
# Runtime libraries those packages link against that a non-Debian GPU image may lack (libhdf5
# needs libcurl and libcrypto, criterion's libgit2 needs Kerberos, ...), with their own
# dependencies. gpu-run.sh links them in only where the image has no library of that name, so
# the image's own copies win wherever they exist.
fallback=(libcurl4 libffi8 libgssapi-krb5-2 libpcre2-8-0 libssl3 libgomp1 zlib1g)
mapfile -t closure < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances --no-pre-depends "${fallback[@]}" |
    grep -E '^[a-z0-9]' | grep -vE '^(libc6|libgcc-s1|gcc-[0-9]+-base)$' | sort -u)
mkdir -p .deps/fallback
(cd .deps/fallback && apt-get download -qq "${closure[@]}")
du -sh .deps .deps/fallback
