#!/usr/bin/env bash
# Installs (as root) or lists (otherwise) the system packages cutune builds against, on Debian
# 12 (or newer) or Ubuntu 24.04. The CUDA toolkit with cuDNN is not a Debian package: when it is
# missing the build uses the CPU backend only, and this script says so.
set -euo pipefail

packages=(build-essential cmake pkg-config
          libopenblas-openmp-dev   # BLAS for the CPU backend, sharing OpenMP's thread pool
          libdnnl-dev              # oneDNN 2.x: the CPU backend's convolutions (OpenMP build)
          libhdf5-dev              # Keras .h5 weights
          libpng-dev libjpeg-dev   # image decoding, curves.png
          libtiff-dev libstb-dev   # .tif/.tiff (libtiff), .bmp/.ppm (stb_image): Keras counts them
          libcjson-dev             # iceberg JSON
          libcurl4-openssl-dev     # downloading the official ImageNet weights
          libssl-dev               # their MD5 check (libcrypto)
          libcriterion-dev         # tests
          libopenmpi-dev openmpi-bin  # mpirun/srun launches and the CPU ranks' all-reduce
          iproute2                 # the rendezvous test across network namespaces (ip netns)
          python3-venv python3-numpy python3-pytest python3-pil)  # the Python package's tests

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "cutune: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "cutune: missing system packages. Install them with:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    echo "cutune: no CUDA toolkit found (nvcc); building the CPU backend only." \
         "Install the CUDA toolkit and cuDNN for the GPU backend." >&2
fi
