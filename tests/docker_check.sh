#!/bin/bash
# What can be checked of the Docker image without Docker (ctest docker_context):
#  1. .dockerignore, read with Docker's own rules (patterns anchored at the root, ** for any
#     depth, later lines win, "!" re-includes, a matching folder takes its contents along),
#     leaves out build folders, data, runs, weights and the Git history, and keeps the sources
#     and test fixtures: on a made-up list of paths and on this checkout, where the context
#     must hold every file Git tracks and no file Git ignores;
#  2. the Dockerfile builds through scripts/docker-build.sh, and that script's configure step
#     (the CUDA architectures included, when nvcc is here) succeeds on this checkout;
#  3. its install step, run on this build, installs the command, the library, the man page and
#     the completion, and its packages step names a Debian package for every library they load.
#   docker_check.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/cutune_docker_XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
problem() { echo "docker_check: $*"; fail=1; }

test -f "$src/.dockerignore" || { echo "docker_check: no .dockerignore"; exit 1; }
command -v python3 >/dev/null || { echo "docker_check: python3 reads .dockerignore here"; exit 1; }

# ---- 1. the build context ----
# Docker's .dockerignore matching (moby/patternmatcher), for the paths given on stdin: prints
# each path that goes into the context.
context() {
    python3 -c '
import os, posixpath, re, sys

def compile_pattern(p):
    p = posixpath.normpath(p)
    if len(p) > 1 and p.startswith("/"):
        p = p[1:]
    rx, i = "", 0
    while i < len(p):
        c = p[i]
        if p.startswith("**", i):
            i += 2
            if i < len(p) and p[i] == "/":
                i += 1
            rx += ".*" if i >= len(p) else "(.*/)?"
            continue
        if c == "*":
            rx += "[^/]*"
        elif c == "?":
            rx += "[^/]"
        elif c == "[":
            j = p.index("]", i)
            rx += p[i:j + 1]
            i = j
        else:
            rx += re.escape(c)
        i += 1
    return re.compile("^" + rx + "$")

rules = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    exclusion = line.startswith("!")
    if exclusion:
        line = line[1:].strip()
    rules.append((exclusion, compile_pattern(line)))

def excluded(path):
    parts = path.split("/")
    parents = ["/".join(parts[:k]) for k in range(1, len(parts))]
    matched = False
    for exclusion, rx in rules:
        if exclusion != matched:
            continue
        if rx.match(path) or any(rx.match(d) for d in parents):
            matched = not exclusion
    return matched

for path in sys.stdin.read().split("\n"):
    if path and not excluded(path):
        print(path)
' "$src/.dockerignore"
}

# A made-up tree: what must stay out and what must go in, whatever this checkout holds.
cat >"$work/out.txt" <<'EOF'
build/CMakeCache.txt
build/CMakeFiles/cutune.dir/main.c.o
build-cpu/cutune
build-docs/cutune.1
cutune-demo/data/train/dementia/0001.png
runs/mri/best.h5
gpu-out/bench.txt
out/log.csv
.deps/lib/libcudnn.so
.git/HEAD
.git/objects/pack/pack-1.pack
weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
model.h5
data/models/best.h5
tests/__pycache__/reference.cpython-312.pyc
bench/x.pyc
python/cutune.egg-info/PKG-INFO
dist/cutune-0.2.0.tar.gz
python/dist/cutune-0.2.0-cp312-linux_x86_64.whl
_skbuild/linux-x86_64-3.12/cmake-build/CMakeCache.txt
python/build/lib/cutune/_cutune.so
examples/build/CMakeCache.txt
build.log
EOF
cat >"$work/in.txt" <<'EOF'
Dockerfile
CMakeLists.txt
src/cli/main.c
include/cutune/train.h
cmake/docs.cmake
scripts/build.sh
scripts/install-deps.sh
scripts/docker-build.sh
tests/CMakeLists.txt
tests/fixtures/keras1_full.h5
tests/fixtures/data/rgb420.jpg
tests/reference/vgg16_golden.py
weights/fetch.sh
weights/README.md
examples/finetune.c
EOF
cat "$work/out.txt" "$work/in.txt" | context >"$work/kept.txt"
while read -r path; do
    grep -qxF "$path" "$work/kept.txt" && problem ".dockerignore lets $path into the context"
done <"$work/out.txt"
while read -r path; do
    grep -qxF "$path" "$work/kept.txt" || problem ".dockerignore leaves $path out of the context"
done <"$work/in.txt"

# This checkout: every file under it, as Docker would walk it.
(cd "$src" && find . -path ./.git -prune -o -type f -print | sed 's#^\./##' | sort) >"$work/all.txt"
context <"$work/all.txt" | sort >"$work/context.txt"
bytes=$(cd "$src" && tr '\n' '\0' <"$work/context.txt" | du -cb --files0-from=- | tail -n 1 |
        cut -f 1)
echo "docker_check: the context holds $(wc -l <"$work/context.txt") files, $((bytes / 1024)) KiB"
[ "$bytes" -lt $((64 << 20)) ] || problem "the context holds $((bytes >> 20)) MiB (at most 64)"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked files go in (but .ci/, which only CI runs); files Git ignores stay out.
    (cd "$src" && git ls-files) | grep -v '^\.ci/' | sort >"$work/tracked.txt" || true
    (cd "$src" && git ls-files --others --ignored --exclude-standard) | sort >"$work/ignored.txt"
    comm -23 "$work/tracked.txt" "$work/context.txt" >"$work/missing.txt"
    comm -12 "$work/ignored.txt" "$work/context.txt" >"$work/leaked.txt"
    # A tracked file deleted in this work tree is in neither list: it is not there to send.
    while read -r f; do
        [ -e "$src/$f" ] && problem "$f, tracked by Git, is left out of the context"
    done <"$work/missing.txt"
    if [ -s "$work/leaked.txt" ]; then
        problem "$(wc -l <"$work/leaked.txt") files Git ignores would go into the context, as:"
        sed -n '1,20s/^/  /p' "$work/leaked.txt"
    fi
else
    echo "docker_check: SKIP the comparison with Git: $src is not a Git checkout"
fi

# ---- 2. the Dockerfile's build steps ----
grep -q '^COPY \. \.$' "$src/Dockerfile" || problem "the Dockerfile does not COPY . ."
grep -q 'scripts/docker-build.sh all ' "$src/Dockerfile" ||
    problem "the Dockerfile does not build through scripts/docker-build.sh all"
grep -q 'scripts/install-deps.sh' "$src/Dockerfile" ||
    problem "the Dockerfile does not install the build dependencies with scripts/install-deps.sh"
test -x "$src/scripts/docker-build.sh" || problem "scripts/docker-build.sh is not executable"
if "$src/scripts/docker-build.sh" configure "$src" "$work/configure" >"$work/configure.log" 2>&1
then
    grep 'cutune: CUDA backend\|cutune: no CUDA' "$work/configure.log" || true
else
    problem "scripts/docker-build.sh configure failed:"
    tail -n 30 "$work/configure.log"
fi
rm -rf "$work/configure"

# ---- 3. install and the runtime packages ----
"$src/scripts/docker-build.sh" install "$build" "$work/prefix" >/dev/null
for f in bin/cutune include/cutune/cutune.h share/man/man1/cutune.1 \
         share/bash-completion/completions/cutune; do
    test -s "$work/prefix/$f" || problem "the install has no $f"
done
[ -n "$(find "$work/prefix" -name 'libcutune.so*')" ] || problem "the install has no libcutune.so"
[ -n "$(find "$work/prefix" -name cutune.pc)" ] || problem "the install has no cutune.pc"
cmp -s "$work/prefix/share/man/man1/cutune.1" <("$work/prefix/bin/cutune" docs man) ||
    problem "the installed cutune.1 is not what the installed cutune writes"
if command -v dpkg-query >/dev/null 2>&1; then
    if "$src/scripts/docker-build.sh" packages "$work/prefix" "$work/packages.txt"; then
        echo "docker_check: runtime packages: $(tr '\n' ' ' <"$work/packages.txt")"
        libs=$(objdump -p "$work/prefix/bin/cutune" | awk '$1 == "NEEDED" {print $2}')
        # library: the start of its package's name (libcrypto comes with libssl)
        for pair in hdf5:libhdf5 png:libpng jpeg:libjpeg cjson:libcjson openblas:libopenblas \
                    curl:libcurl crypto:libssl; do
            grep -q "lib${pair%%:*}" <<<"$libs" || continue
            grep -q "^${pair#*:}" "$work/packages.txt" ||
                problem "no runtime package for lib${pair%%:*} among the packages above"
        done
        grep -qx ca-certificates "$work/packages.txt" || problem "no ca-certificates"
    else
        problem "scripts/docker-build.sh packages failed"
    fi
else
    echo "docker_check: SKIP the runtime packages: no dpkg-query here"
fi

[ "$fail" -eq 0 ] && echo "docker_check: the Docker context and build steps hold"
exit "$fail"
