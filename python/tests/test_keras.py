"""Keras loads what cutune wrote: Model.to_keras() rebuilds each backbone's model from
keras_code() and loads the file, and Keras's predictions on the same images equal cutune's.
Skipped where Keras (with a backend: KERAS_BACKEND, torch by default here) is not installed."""
import os

import numpy as np
import pytest

import cutune
from conftest import QUICK

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

CAFFE_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


@pytest.mark.parametrize("backbone", ["vgg16", "vgg19"])
def test_to_keras_predicts_as_cutune(data, tmp_path, backbone):
    run = str(tmp_path / backbone)
    flags = dict(QUICK, head="flatten,dense:8:relu,dense:2:softmax")
    cutune.train(data=data["train"], out=run, epochs=1, verbose=0, backbone=backbone, **flags)
    model = cutune.load_model(os.path.join(run, "final.h5"), device="cpu")
    k = model.to_keras()
    assert len([l for l in k.layers if l.name.startswith("block")]) == (
        18 if backbone == "vgg16" else 21)
    rng = np.random.default_rng(5)
    images = (rng.random((4, 32, 32, 3)) * 255).astype(np.float32)
    ours = model.predict(images)
    theirs = np.asarray(k.predict(images[..., ::-1] - CAFFE_MEAN, verbose=0))
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)
