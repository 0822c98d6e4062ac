#!/usr/bin/env python3
"""Shows that Keras loads a file cutune wrote and reproduces cutune's predictions.

Flow (re-runnable; needs a built tree, `pip install keras h5py`, and torch):

  1. The C test program writes the two model files: `CUTUNE_ROUNDTRIP_OUT=DIR
     BUILD/tests/test_weights --filter 'roundtrip/*'` builds, with cutune, the seed iceberg
     model at 48x48 (+ incidence angle) and the seed MRI model at 64x64, sets every parameter
     from the Philox formula of tests/test_golden.c (uniform +-sqrt(6/fan_in) kernels, +-0.05
     biases), and saves DIR/iceberg_48.h5 and DIR/mri_64.h5 with ct_weights_save.
  2. `BUILD/cutune export-keras FILE` prints the Keras code for each; this script runs it, which
     builds the Keras model (explicitly named layers) and calls model.load_weights(FILE), the
     default by-order load. It checks that Keras's model.layers order is the file's
     layer_names, that by_name=True loads the same weights, and that the conv kernels Keras
     holds are the file's HWIO arrays.
  3. Keras predicts on the inputs of tests/reference/vgg16_golden.py (make_input / make_aux,
     Philox, amplitude 1; 4 samples) and the predictions go to tests/fixtures/keras_roundtrip.txt.
  4. The C test (run normally) rebuilds the same model and inputs, writes and reads the file,
     predicts, and compares with that fixture; its output, printed here, gives the largest
     difference.

Run from the repository root:

    KERAS_BACKEND=torch python3 tests/reference/keras_roundtrip.py [--build build-w]
"""

import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "torch")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import vgg16_golden as golden  # noqa: E402  (Philox and the input formulas)

import keras  # noqa: E402

N = 4
MODELS = [("iceberg_48", 48, True), ("mri_64", 64, False)]


def file_layer_names(path):
    with h5py.File(path, "r") as f:
        return [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-w"))
    args = ap.parse_args()
    cli = os.path.join(args.build, "cutune")
    test = os.path.join(args.build, "tests", "test_weights")
    fixture = os.path.join(ROOT, "tests", "fixtures", "keras_roundtrip.txt")
    env = dict(os.environ, CUTUNE_FIXTURES=os.path.join(ROOT, "tests", "fixtures"))

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([test, "--filter", "roundtrip/*", "--jobs", "1"], check=True,
                       env=dict(env, CUTUNE_ROUNDTRIP_OUT=tmp))
        lines = ["# Keras predictions for the cutune files of tests/test_weights.c (roundtrip).",
                 "# Written by tests/reference/keras_roundtrip.py with Keras %s (backend %s), "
                 "h5py %s, numpy %s." % (keras.__version__, keras.backend.backend(),
                                         h5py.__version__, np.__version__),
                 "# name count p0 p1 ... (model.predict on vgg16_golden.make_input(%d, hw, hw, 3)"
                 " and make_aux(%d); row-major (sample, class))" % (N, N)]
        for name, hw, aux in MODELS:
            path = os.path.join(tmp, name + ".h5")
            code = subprocess.run([cli, "export-keras", path], check=True, capture_output=True,
                                  text=True).stdout
            ns = {}
            exec(compile(code, name + ".py", "exec"), ns)  # builds and load_weights(path)
            model = ns["model"]
            keras_order = [layer.name for layer in model.layers]
            assert keras_order == file_layer_names(path), (
                "Keras's model.layers order differs from the file's layer_names:\n%s\n%s" %
                (keras_order, file_layer_names(path)))
            with h5py.File(path, "r") as f:
                k = np.asarray(f["block3_conv2/block3_conv2/kernel"])
            assert np.array_equal(model.get_layer("block3_conv2").get_weights()[0], k)

            x = golden.make_input(N, hw, hw, 3)
            inputs = [x, golden.make_aux(N)] if aux else x
            p = np.asarray(model.predict(inputs, verbose=0), dtype=np.float32)
            by_name = ns["build_model"]()
            by_name.load_weights(path, by_name=True)
            p2 = np.asarray(by_name.predict(inputs, verbose=0), dtype=np.float32)
            assert np.array_equal(p, p2), "by_name=True loaded different weights"
            print("%s: Keras layer order = file order (%d layers); predictions %s" %
                  (name, len(keras_order), p.ravel()))
            lines.append("%s %d %s" % (name, p.size, " ".join("%.9g" % v for v in p.ravel())))
        with open(fixture, "w") as f:
            f.write("\n".join(lines) + "\n")
        print("wrote", fixture)
    # The C side compares and prints the largest difference.
    subprocess.run([test, "--filter", "roundtrip/*", "--jobs", "1", "--verbose"], check=True,
                   env=env)


if __name__ == "__main__":
    main()
