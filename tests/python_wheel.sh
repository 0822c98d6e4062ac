#!/bin/sh
# The Python package as a user installs it: `pip install .` of the checkout in a fresh virtual
# environment (scikit-build-core builds libcutune and the command, CPU only to keep it quick),
# then the package's tests against the installed package and command, with nothing of the
# build tree on the paths. Exits 77 (ctest: skipped) when scikit-build-core cannot be had
# (no network and no copy installed).
#
#   python_wheel.sh SOURCE_DIR PYTHON
set -eu
src=$1
python=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m venv --system-site-packages "$work/venv"
pip="$work/venv/bin/pip"
if ! "$work/venv/bin/python" -c "import scikit_build_core" 2>/dev/null &&
   ! "$pip" install -q "scikit-build-core>=0.10" >"$work/pip.log" 2>&1; then
    echo "python_wheel: skipped: scikit-build-core is not installed and cannot be fetched:"
    tail -n 3 "$work/pip.log"
    exit 77
fi
"$pip" install -q --no-build-isolation -C cmake.define.CUTUNE_CUDA=OFF \
    -C build-dir="$work/build" "$src"

cd "$work"
env -u CUTUNE_LIBRARY -u PYTHONPATH CUTUNE_CLI="$work/venv/bin/cutune" CUTUNE_OFFLINE=1 \
    CUTUNE_FIXTURES="$src/tests/fixtures" CUTUNE_INCLUDE="$src/include" \
    "$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$src/python/tests"
"$work/venv/bin/python" -c "import cutune, os; assert os.path.dirname(cutune._lib.lib._name) == os.path.dirname(cutune.__file__), cutune._lib.lib._name; print('python_wheel: cutune', cutune.__version__, 'from', cutune.__file__)"
"$work/venv/bin/cutune" --version
