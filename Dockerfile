# cutune on NVIDIA's CUDA + cuDNN images: a build stage with the toolkit, which compiles cutune
# and runs its quick tests, and a runtime stage with the libraries only.
#   docker build -t cutune .
#   docker run --gpus all --rm cutune devices
#   docker run --gpus all --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" \
#       -v "$HOME/.keras:/home/cutune/.keras" cutune train --data mri/train --out runs/mri
# Run as the calling user, files written under /work belong to that user; the image works for
# any user id (HOME is /home/cutune, writable by all, where Keras's ~/.keras/models cache lives).
#
# Build arguments:
#   CUDA_ARCHS    CMAKE_CUDA_ARCHITECTURES; empty: scripts/docker-build.sh's default, sm_75 (T4),
#                 80 (A100), 86, 89 (L4, RTX 40xx) and 90 (H100/H200) natively, PTX for newer
#                 GPUs. E.g. --build-arg CUDA_ARCHS=89 builds faster for one RTX 4090.
#   CUDA_VERSION  13.0.1 needs an R580 or newer driver. --build-arg CUDA_VERSION=12.9.1 builds on
#                 CUDA 12 for older drivers (R575+; on datacenter GPUs also R535+, or any R525+
#                 with -e NVIDIA_DISABLE_REQUIRE=1 at run time, as CUDA 12's minor-version
#                 compatibility allows).
#   UBUNTU        ubuntu24.04. Ubuntu 22.04's CMake (3.22) is older than the 3.24 cutune needs.
ARG CUDA_VERSION=13.0.1
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-${UBUNTU} AS build
ARG CUDA_ARCHS=
WORKDIR /src
# The build dependencies first, in their own layer: scripts/install-deps.sh is the list the
# README's set-up uses too.
COPY scripts/install-deps.sh scripts/
RUN ./scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN CUDA_ARCHS="${CUDA_ARCHS}" ./scripts/docker-build.sh all /src /src/build /opt/cutune

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${UBUNTU}
ARG DEBIAN_FRONTEND=noninteractive
# The Debian packages of the shared libraries the build stage's cutune loads (read there with
# ldd and dpkg, so the names fit this Ubuntu release), and ca-certificates for downloads.
COPY --from=build /src/build/runtime-packages.txt /tmp/
RUN apt-get update \
    && xargs -a /tmp/runtime-packages.txt apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt
COPY --from=build /opt/cutune /opt/cutune
RUN mkdir -p /home/cutune/.keras/models /work && chmod -R 1777 /home/cutune /work
ENV PATH=/opt/cutune/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/cutune/lib:${LD_LIBRARY_PATH} \
    HOME=/home/cutune
WORKDIR /work
ENTRYPOINT ["cutune"]
CMD ["--help"]
