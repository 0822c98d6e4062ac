"""A trained model from Python: ``cutune.load_model("runs/mri/best.h5")``.

The file carries cutune's configuration (backbone, head, input size, preprocessing, class
names), so a loaded model predicts what ``cutune predict`` predicts: NumPy images at the model's
input size, or a class-folder tree / iceberg JSON read and resized exactly as training read
them. evaluate gives ``cutune evaluate``'s metrics; keras_code and to_keras hand the model to
Keras.
"""
from __future__ import annotations

import os
from ctypes import POINTER, byref, c_float, c_void_p
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib
from ._lib import lib

ArrayInput = Union[np.ndarray, Sequence[np.ndarray]]


def _float_array(x: Any, name: str) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if not np.all(np.isfinite(a)):
        raise _lib.InvalidArgument(f"{name}: holds NaN or infinite values")
    return a


def _predict_config(model: str, data: str, batch_size: int, tta: Sequence[str],
                    device: Optional[str], skip_bad: bool) -> _lib.PredictConfig:
    c = _lib.PredictConfig()
    lib.ct_predict_config_defaults(byref(c))
    c.model, c.data, c.batch_size, c.skip_bad = model.encode(), data.encode(), batch_size, skip_bad
    unknown = set(tta) - {"hflip", "vflip"}
    if unknown:
        raise _lib.InvalidArgument(f"tta: expected hflip and/or vflip, not {sorted(unknown)}")
    c.tta_hflip, c.tta_vflip = "hflip" in tta, "vflip" in tta
    if device is not None:
        c.device = device.encode()
    return c


class Model:
    """A cutune model on a device. Load one with ``cutune.load_model``."""

    def __init__(self, handle: c_void_p, path: Optional[str], device: str, batch_size: int):
        self._handle = handle
        self.path = path
        self.device = device
        self.batch_size = batch_size

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Frees the model's device memory now (garbage collection does it otherwise)."""
        if getattr(self, "_handle", None):
            lib.ct_model_free(self._handle)
            self._handle = None

    def _h(self) -> c_void_p:
        if not self._handle:
            raise _lib.InvalidArgument("the model was closed")
        return self._handle

    # ---- what the model is ----

    @property
    def config(self) -> Dict[str, Any]:
        c = lib.ct_model_get_config(self._h()).contents
        return {"backbone": (c.backbone or b"vgg16").decode(), "head": (c.head or b"").decode(),
                "input_shape": (c.input_h, c.input_w, c.input_c), "aux_dim": c.aux_dim}

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return self.config["input_shape"]

    @property
    def outputs(self) -> int:
        """1 for a sigmoid (class 1's probability), K for a K-class softmax."""
        return lib.ct_model_num_outputs(self._h())

    @property
    def class_names(self) -> List[str]:
        names = []
        for k in range(max(self.outputs, 2)):
            name = lib.ct_model_class_name(self._h(), k)
            if name is None:
                break
            names.append(name.decode())
        return names

    def count_params(self) -> int:
        return lib.ct_model_num_params(self._h(), None)

    def summary(self, print_fn=print) -> None:
        """Keras's model.summary(): layers, output shapes, parameters."""
        print_fn(_lib.captured(lambda f: lib.ct_model_summary(self._h(), f)).rstrip("\n"))

    def save(self, path: str) -> None:
        """Writes the legacy Keras layout with cutune's configuration, atomically."""
        _lib.check(lib.ct_model_save(self._h(), path.encode()))
        self.path = path

    # ---- predictions ----

    def predict(self, x: Union[str, os.PathLike, ArrayInput], batch_size: Optional[int] = None,
                tta: Sequence[str] = (), return_names: bool = False, skip_bad: bool = False):
        """Class probabilities, (n, outputs) float32.

        ``x`` is a class-folder tree or iceberg JSON (read, resized and preprocessed as the
        model was trained; ``tta=("hflip", "vflip")`` averages flipped copies; with
        ``return_names`` the file names or iceberg ids come too), or images (n, H, W, C) at
        the model's input size with pixel values as ``load_img`` + ``img_to_array`` give them
        (the model's preprocessing is applied here), or ``[images, aux]`` for a model with an
        auxiliary input (the iceberg angle)."""
        if isinstance(x, (str, os.PathLike)):
            probs, names = self._predict_path(os.fspath(x), batch_size, tta, skip_bad)
            return (probs, names) if return_names else probs
        if tta or return_names:
            raise _lib.InvalidArgument("tta and return_names are for files; flip arrays "
                                       "yourself (np.flip) and average")
        return self._predict_arrays(x)

    def _predict_arrays(self, x: ArrayInput) -> np.ndarray:
        cfg = self.config
        aux = None
        if isinstance(x, (list, tuple)):
            if len(x) != 2:
                raise _lib.InvalidArgument("expected [images, aux] for a two-input model")
            x, aux = x
        images = _float_array(x, "images")
        if images.ndim == 3:
            images = images[None]
        if images.shape[1:] != cfg["input_shape"]:
            raise _lib.InvalidArgument(
                f"images: expected shape (n, {', '.join(map(str, cfg['input_shape']))}), "
                f"got {images.shape}: resize to the model's input size first")
        n = images.shape[0]
        aux_p = None
        if cfg["aux_dim"]:
            if aux is None:
                raise _lib.InvalidArgument(f"the model takes {cfg['aux_dim']} auxiliary "
                                           "value(s) per image: give [images, aux]")
            aux = _float_array(aux, "aux").reshape(n, cfg["aux_dim"])
            aux_p = aux.ctypes.data_as(POINTER(c_float))
        elif aux is not None:
            raise _lib.InvalidArgument("the model takes no auxiliary input")
        probs = np.empty((n, self.outputs), dtype=np.float32)
        _lib.check(lib.ct_model_predict_pixels(
            self._h(), images.ctypes.data_as(POINTER(c_float)), aux_p, n,
            probs.ctypes.data_as(POINTER(c_float))))
        return probs

    def _file(self) -> str:
        if self.path is None:
            raise _lib.InvalidArgument("the model has no file: save it first (model.save)")
        return self.path

    def _predict_path(self, data: str, batch_size, tta, skip_bad):
        c = _predict_config(self._file(), data, batch_size or self.batch_size, tta, self.device,
                            skip_bad)
        p = _lib.Predictions()
        _lib.check(lib.ct_predict_arrays(byref(c), byref(p)))
        try:
            probs = np.ctypeslib.as_array(p.probs, shape=(p.rows, p.outputs)).copy() \
                if p.rows else np.zeros((0, p.outputs), dtype=np.float32)
            names = [p.names[i].decode() for i in range(p.rows)]
        finally:
            lib.ct_predictions_free(byref(p))
        return probs, names

    def evaluate(self, data: Union[str, os.PathLike], batch_size: Optional[int] = None,
                 tta: Sequence[str] = (), skip_bad: bool = False) -> Dict[str, Any]:
        """``cutune evaluate``'s metrics on labelled data: loss, accuracy, auc (two classes),
        the confusion matrix (rows: true class) and per-class precision and recall."""
        c = _predict_config(self._file(), os.fspath(data), batch_size or self.batch_size, tta,
                            self.device, skip_bad)
        m = _lib.Metrics()
        _lib.check(lib.ct_evaluate(byref(c), byref(m)))
        try:
            k = m.k
            result = {
                "samples": m.n, "loss": m.loss, "accuracy": m.accuracy, "auc": m.auc,
                "confusion": np.ctypeslib.as_array(m.confusion, shape=(k, k)).copy(),
                "precision": np.ctypeslib.as_array(m.precision, shape=(k,)).copy(),
                "recall": np.ctypeslib.as_array(m.recall, shape=(k,)).copy(),
                "class_names": [m.class_names[i].decode() for i in range(k)],
                "report": _lib.captured(lambda f: lib.ct_metrics_print(f, byref(m),
                                                                       m.class_names)),
            }
        finally:
            lib.ct_metrics_free(byref(m))
        return result

    # ---- Keras ----

    def keras_code(self) -> str:
        """The Keras code that rebuilds this model and loads its file (``export-keras``)."""
        path = self._file().encode()
        return _lib.captured(lambda f: lib.ct_weights_keras_code(path, f))

    def to_keras(self):
        """The model as a Keras model, its weights loaded from the file (needs Keras)."""
        try:
            import keras  # noqa: F401
        except ImportError as e:
            raise ImportError("to_keras needs Keras: pip install keras") from e
        namespace: Dict[str, Any] = {}
        exec(compile(self.keras_code(), self._file(), "exec"), namespace)
        return namespace["model"]

    def __repr__(self) -> str:
        cfg = self.config
        return (f"Model({cfg['backbone']}, head={cfg['head']!r}, "
                f"input_shape={cfg['input_shape']}, path={self.path!r})")


def load_model(path: Union[str, os.PathLike], device: str = "auto",
               batch_size: int = 32) -> Model:
    """A model written by cutune (best.h5, final.h5), on ``device`` ("auto": CUDA when
    usable), predicting batches of up to ``batch_size``."""
    path = os.fspath(path)
    handle = c_void_p()
    _lib.check(lib.ct_model_load(byref(handle), path.encode(), device.encode(), batch_size))
    return Model(handle, path, device, batch_size)


__all__ = ["Model", "load_model"]
