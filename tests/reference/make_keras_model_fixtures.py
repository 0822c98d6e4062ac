#!/usr/bin/env python3
"""Writes the Keras model fixtures that tests/test_keras_model.c reads: a Keras user's own model,
saved by Keras itself, with Keras's predictions on a few images.

  keras_vgg16_32.h5          model.save('m.h5') (the legacy HDF5 format, model_config JSON on
                             the root) of VGG16(weights=None, include_top=False, 32x32) under
                             Flatten, Dense(16, relu), Dropout(0.25), Dense(3), Activation(softmax)
  keras_vgg16_32_w.h5        the same weights as save_weights wrote them before Keras 3 (the
                             legacy layout, through Keras's own legacy_h5_format writer)
  keras_vgg16_32.weights.h5  Keras 3's model.save_weights('w.weights.h5')
  keras_refuse_bn.h5         model_config only: the same model with BatchNormalization in its
                             head (cutune refuses it by name)
  keras_predict/*.png        four 32x32 RGB images
  keras_predict.txt          Keras's predictions: `name p0 p1 p2` per image, after
                             keras.applications.vgg16.preprocess_input (caffe)

A full VGG16 is 59 MB of float32, so the weights follow a formula that compresses: each
convolution kernel (3, 3, C, K) is 1/(9C) everywhere (a local mean, so activations keep their
scale through 13 layers) except its corner [:3, :3, :8, :8], which is uniform in
+-sqrt(6/(9C)) from a seeded generator; biases are uniform in +-0.1; the two Dense kernels are
uniform +-sqrt(6/fan_in). After Keras saved them, every conv kernel is rewritten in place as a
chunked, gzip-compressed dataset with the fill value 1/(9C) and only the corner chunk written,
value for value what Keras wrote (checked: Keras loads the rewritten file and predicts the same).
The files stay well under 100 KB each.

Run from the repository root (needs keras with the torch backend, h5py, numpy, Pillow):

    KERAS_BACKEND=torch python3 tests/reference/make_keras_model_fixtures.py
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import keras  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
SIZE = 32
CORNER = 8


def build():
    base = keras.applications.VGG16(weights=None, include_top=False,
                                    input_shape=(SIZE, SIZE, 3))
    x = keras.layers.Flatten()(base.output)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Dense(3)(x)
    out = keras.layers.Activation("softmax")(x)
    return keras.Model(base.input, out)


def set_weights(model, rng):
    for layer in model.layers:
        w = layer.get_weights()
        if not w:
            continue
        kernel, bias = w
        if kernel.ndim == 4:
            c = kernel.shape[2]
            k = np.full(kernel.shape, 1.0 / (9 * c), dtype=np.float32)
            a = np.sqrt(6.0 / (9 * c))
            cc, kk = min(c, CORNER), min(kernel.shape[3], CORNER)
            k[:3, :3, :cc, :kk] = rng.uniform(-a, a, (3, 3, cc, kk))
        else:
            a = np.sqrt(6.0 / kernel.shape[0])
            k = rng.uniform(-a, a, kernel.shape).astype(np.float32)
        b = rng.uniform(-0.1, 0.1, bias.shape).astype(np.float32)
        layer.set_weights([k, b])


def shrink(path):
    """Rewrites every 4-D dataset as chunked + gzip with its fill value, writing its corner."""
    with h5py.File(path, "r+") as f:
        found = []
        f.visititems(lambda name, obj: found.append(name)
                     if isinstance(obj, h5py.Dataset) and obj.ndim == 4 else None)
        for name in found:
            data = f[name][()]
            attrs = dict(f[name].attrs)
            fill = np.float32(1.0 / (9 * data.shape[2]))
            cc, kk = min(data.shape[2], CORNER), min(data.shape[3], CORNER)
            corner = data[:3, :3, :cc, :kk].copy()
            rest = data.copy()
            rest[:3, :3, :cc, :kk] = fill
            assert np.all(rest == fill), name
            del f[name]
            d = f.create_dataset(name, shape=data.shape, dtype="<f4",
                                 chunks=(3, 3, cc, kk), compression="gzip", fillvalue=fill)
            d[:3, :3, :cc, :kk] = corner
            for key, value in attrs.items():
                d.attrs[key] = value
    # HDF5 does not give back the space of deleted datasets: copy into a fresh file.
    tmp = path + ".tmp"
    with h5py.File(path, "r") as src, h5py.File(tmp, "w", libver=("earliest", "v110")) as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in src:
            src.copy(src[name], dst, name=name)
    os.replace(tmp, path)


def images(rng):
    folder = os.path.join(OUT, "keras_predict")
    os.makedirs(folder, exist_ok=True)
    names = []
    for i in range(4):
        # Smooth gradients plus noise: the pixels' full range, different per image.
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        base = np.stack([xx * 8, yy * 8, (xx + yy) * 4], axis=-1) * (i + 1) % 256
        noise = rng.integers(0, 64, (SIZE, SIZE, 3))
        pixels = ((base + noise) % 256).astype(np.uint8)
        name = "img%d.png" % i
        Image.fromarray(pixels, "RGB").save(os.path.join(folder, name))
        names.append(name)
    return folder, names


def predict(model, folder, names):
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(os.path.join(folder, n)))
                  for n in names])
    x = keras.applications.vgg16.preprocess_input(x)
    return np.asarray(model.predict(x, verbose=0))


def refusal(model_path):
    """A model_config whose head has BatchNormalization, in a file with nothing else."""
    with h5py.File(model_path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
    for layer in cfg["config"]["layers"]:
        if layer["config"]["name"] == "dropout":
            layer["class_name"] = "BatchNormalization"
            layer["config"]["name"] = layer["name"] = "batch_normalization"
    for layer in cfg["config"]["layers"]:
        text = json.dumps(layer["inbound_nodes"]).replace('"dropout"', '"batch_normalization"')
        layer["inbound_nodes"] = json.loads(text)
    with h5py.File(os.path.join(OUT, "keras_refuse_bn.h5"), "w", libver=("earliest", "v110")) as f:
        f.attrs["model_config"] = json.dumps(cfg)
        f.attrs["keras_version"] = keras.__version__
        f.attrs["backend"] = "torch"


def main():
    rng = np.random.default_rng(20261207)
    keras.utils.set_random_seed(1)
    model = build()
    set_weights(model, rng)
    folder, names = images(rng)
    ours = predict(model, folder, names)

    model_path = os.path.join(OUT, "keras_vgg16_32.h5")
    model.save(model_path)
    with h5py.File(os.path.join(OUT, "keras_vgg16_32_w.h5"), "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    model.save_weights(os.path.join(OUT, "keras_vgg16_32.weights.h5"))
    for name in ["keras_vgg16_32.h5", "keras_vgg16_32_w.h5", "keras_vgg16_32.weights.h5"]:
        shrink(os.path.join(OUT, name))
        # Keras reads the rewritten file and predicts as before.
        again = build()
        if name.endswith("_w.h5"):
            with h5py.File(os.path.join(OUT, name), "r") as f:
                legacy_h5_format.load_weights_from_hdf5_group(f, again)
        elif name.endswith(".weights.h5"):
            again.load_weights(os.path.join(OUT, name))
        else:
            again = keras.models.load_model(os.path.join(OUT, name))
        np.testing.assert_array_equal(predict(again, folder, names), ours)
    refusal(model_path)

    with open(os.path.join(OUT, "keras_predict.txt"), "w") as f:
        f.write("# Keras %s predictions of keras_vgg16_32.h5 on keras_predict/*.png "
                "(tests/reference/make_keras_model_fixtures.py)\n" % keras.__version__)
        for n, p in zip(names, ours):
            f.write("%s %s\n" % (n, " ".join("%.9g" % v for v in p)))
    print(open(os.path.join(OUT, "keras_predict.txt")).read())


if __name__ == "__main__":
    main()
