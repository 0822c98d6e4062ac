# cutune on NVIDIA's CUDA + cuDNN images: a build stage with the toolkit, and a slim runtime.
#   docker build -t cutune .
#   docker run --gpus all --rm cutune devices
#   docker run --gpus all --rm cutune bench --device cuda --input-size 224 --batch-size 64
# The CUDA architectures default to sm_80 and sm_90 (+ PTX); pass e.g.
#   --build-arg CUDA_ARCHS=89 for an RTX 4090.
ARG CUDA_VERSION=13.0.1
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-${UBUNTU} AS build
ARG CUDA_ARCHS="80-real;90"
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config libopenblas-openmp-dev libhdf5-dev libpng-dev \
        libjpeg-dev libcjson-dev libcriterion-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS}" \
    && cmake --build build -j"$(nproc)" \
    && (cd build && ctest --output-on-failure) \
    && cmake --install build --prefix /opt/cutune

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${UBUNTU}
RUN apt-get update && apt-get install -y --no-install-recommends \
        libopenblas0-openmp libgomp1 libhdf5-103-1t64 libpng16-16t64 libjpeg-turbo8 libcjson1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/cutune /opt/cutune
ENV PATH=/opt/cutune/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/cutune/lib:${LD_LIBRARY_PATH}
WORKDIR /work
ENTRYPOINT ["cutune"]
CMD ["--help"]
