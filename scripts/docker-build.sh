#!/usr/bin/env bash
# How the Docker image builds cutune, in one place: the Dockerfile's build stage runs
# `docker-build.sh all`, and the docker_context test runs the same steps on a checkout (no
# Docker needed) so that a change that would break the image fails the test suite first.
#
#   docker-build.sh configure SOURCE_DIR BUILD_DIR   CMake configure, as the image does
#   docker-build.sh build BUILD_DIR                  compile
#   docker-build.sh test BUILD_DIR                   the quick tests (ctest -L quick)
#   docker-build.sh install BUILD_DIR PREFIX         cmake --install
#   docker-build.sh packages PREFIX LIST             the Debian packages the installed files
#                                                    need at run time, one a line, into LIST
#   docker-build.sh all SOURCE_DIR BUILD_DIR PREFIX  all of these, in order (LIST is
#                                                    BUILD_DIR/runtime-packages.txt)
#
# CUDA_ARCHS (environment) sets CMAKE_CUDA_ARCHITECTURES: the Dockerfile passes its build arg.
# The default covers the T4 (sm_75, Kaggle and Colab), A100 (80), A10/RTX 30xx (86), L4/RTX 40xx
# (89) and H100/H200 (90) natively, with PTX for 9.0 so that newer GPUs compile it at load time.
set -euo pipefail
archs=${CUDA_ARCHS:-75-real;80-real;86-real;89-real;90}

configure() {
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$archs" \
        -DCUTUNE_BENCH=OFF
}

build() {
    cmake --build "$1" -j"$(nproc)"
}

quick_tests() {
    (cd "$1" && ctest -L quick --output-on-failure --timeout 600)
}

install() {
    cmake --install "$1" --prefix "$2"
}

# The package that owns a shared library, found by its resolved path (Debian registers some
# files under /lib and some under /usr/lib, whichever the path ldd printed).
owner() {
    local lib=$1 real candidate
    real=$(readlink -f "$lib")
    for candidate in "$real" "$lib" "${real#/usr}" "/usr${lib}"; do
        dpkg-query -S "$candidate" 2>/dev/null | sed -n '1s/:.*//p' | grep . && return 0
    done
    return 1
}

# The runtime stage starts from NVIDIA's cudnn-runtime image, which has the CUDA libraries
# (cudart, cuBLAS, cuDNN) of the same release, so those are left out; every other shared
# library the installed command and library load must come from a Debian package, named here
# by asking dpkg who owns what ldd resolves. The names differ between Ubuntu releases
# (libhdf5-103-1t64 on 24.04, libhdf5-103-1 on 22.04), which is why they are read, not written.
packages() {
    local prefix=$1 out=$2 missing=0 lib pkg
    local files
    files=$(find "$prefix/bin" "$prefix/lib" -type f \( -perm -u+x -o -name '*.so*' \))
    # The libraries the files name themselves (apt brings what those need), and any library
    # that does not resolve. The driver's own (libcuda) is not in the image: the NVIDIA
    # container runtime mounts the host's at run time.
    local needed
    # shellcheck disable=SC2086
    needed=$(objdump -p $files | awk '$1 == "NEEDED" {print $2}' | sort -u | tr '\n' ' ')
    # shellcheck disable=SC2086
    ldd $files 2>/dev/null | grep -v -E 'libcuda\.so|libnvidia-' |
        awk -v needed=" $needed" '/=> not found/ {print "MISSING " $1}
             /=> \// && index(needed, " " $1 " ") {print $3}' | sort -u >"$out.libs"
    if grep '^MISSING' "$out.libs"; then
        echo "docker-build.sh: the installed files need libraries that are not installed" >&2
        missing=1
    fi
    : >"$out.tmp"
    while read -r lib; do
        case ${lib##*/} in
        MISSING* | libcudart.so* | libcublas*.so* | libcudnn*.so* | libnvrtc* | libnvJitLink*)
            continue ;;
        esac
        if pkg=$(owner "$lib"); then
            echo "$pkg" >>"$out.tmp"
        else
            echo "docker-build.sh: no Debian package owns $lib" >&2
            missing=1
        fi
    done <"$out.libs"
    # libcurl verifies the servers it downloads from against the system's certificates.
    echo ca-certificates >>"$out.tmp"
    sort -u "$out.tmp" >"$out"
    rm -f "$out.tmp" "$out.libs"
    return "$missing"
}

step=${1:-}
shift || true
case $step in
configure) configure "$1" "$2" ;;
build) build "$1" ;;
test) quick_tests "$1" ;;
install) install "$1" "$2" ;;
packages) packages "$1" "$2" ;;
all)
    configure "$1" "$2"
    build "$2"
    quick_tests "$2"
    install "$2" "$3"
    packages "$3" "$2/runtime-packages.txt"
    echo "docker-build.sh: runtime packages: $(tr '\n' ' ' <"$2/runtime-packages.txt")"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2
    ;;
esac
