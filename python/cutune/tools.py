"""The other commands from Python: advise, scan, inspect and devices.

Each calls the library function behind the command of the same name and returns Python values
(dataclasses, lists, NumPy arrays); ``str()`` of a result is what the command prints.
"""
from __future__ import annotations

import os
from ctypes import byref, c_int, c_void_p, create_string_buffer, POINTER
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import numpy as np

from . import _lib
from ._lib import lib
from .training import flag_value

PathLike = Union[str, os.PathLike]

# ---- advise ----


@dataclass
class Advice:
    """What ``cutune advise`` found and recommends; ``command`` is the ``cutune train`` line
    and ``train_flags`` the same as keyword arguments of ``cutune.train``."""
    strategy: str
    freeze_to: Optional[str]
    summary: str
    reasoning: str
    command: str
    class_names: List[str]
    counts: List[int]
    probed: bool
    probe: Dict[str, float]
    similarity: float
    report: str = field(repr=False)

    def __str__(self) -> str:
        return self.report


def advise(data: PathLike, verbose: int = 1, **flags: Any) -> Advice:
    """Measures how well frozen ImageNet features separate the classes and says how much of
    the backbone to train (``cutune advise``). Flags by keyword: backbone, weights,
    input_size, samples, cv, batch_size, seed, device, threads, na_policy, skip_bad, out.
    With verbose=1 the report is printed."""
    config = c_void_p()
    _lib.check(lib.ct_advise_config_new(byref(config)))
    keep = []  # the texts the config points at, alive until ct_advise returns
    try:
        given = dict(flags, data=os.fspath(data), verbose=0)
        for name, value in given.items():
            keep.append(_lib.text(flag_value(value)))
            _lib.check(lib.ct_advise_config_set(config, name.encode(), keep[-1]))
        a = _lib.Advice()
        _lib.check(lib.ct_advise(config, byref(a)))
    finally:
        lib.ct_advise_config_free(config)
    report = _lib.captured(lambda f: lib.ct_advise_print(f, byref(a)))
    if verbose:
        print(report, end="")
    return Advice(
        strategy=_lib.STRATEGIES[a.strategy],
        freeze_to=a.freeze_to.decode() if a.freeze_to else None,
        summary=a.summary.decode(), reasoning=a.reasoning.decode(), command=a.command.decode(),
        class_names=[a.class_names[k].value.decode() for k in range(a.k)],
        counts=list(a.counts[:a.k]), probed=bool(a.probed),
        probe={d.layer.decode(): d.acc for d in a.depth if d.layer} if a.probed else {},
        similarity=a.similarity, report=report)

# ---- scan ----


@dataclass
class Dataset:
    """A dataset as Keras's iterators see it: ``filenames`` (or iceberg ids), ``classes``
    (each sample's class index, -1 unlabelled), ``class_indices`` and ``samples``."""
    path: str
    filenames: List[str]
    classes: np.ndarray
    class_indices: Dict[str, int]
    aux_dim: int
    na_count: int
    ignored: List[str]
    message: str

    @property
    def samples(self) -> int:
        return len(self.filenames)

    @property
    def num_classes(self) -> int:
        return len(self.class_indices)

    def __str__(self) -> str:
        return self.message


def _describe(path: str, ds: c_void_p) -> Dataset:
    n = lib.ct_dataset_count(ds)
    k = lib.ct_dataset_num_classes(ds)
    message = create_string_buffer(256)
    lib.ct_dataset_found_message(ds, message, len(message))
    return Dataset(
        path=path, filenames=[lib.ct_dataset_name(ds, i).decode() for i in range(n)],
        classes=np.array([lib.ct_dataset_label(ds, i) for i in range(n)], dtype=np.int32),
        class_indices={lib.ct_dataset_class_name(ds, c).decode(): c for c in range(k)},
        aux_dim=lib.ct_dataset_aux_dim(ds), na_count=lib.ct_dataset_na_count(ds),
        ignored=[lib.ct_dataset_ignored(ds, i).decode()
                 for i in range(lib.ct_dataset_ignored_count(ds))],
        message=message.value.decode())


SPLITS = {"keras": 0, "stratified": 1}


def scan(path: PathLike, validation_split: float = 0.0, subset: Optional[str] = None,
         split: str = "keras", seed: int = 1) -> Dataset:
    """Opens class folders or an iceberg JSON file as ``cutune scan`` does (no image is
    decoded). With ``validation_split`` and ``subset="training"`` or ``"validation"``, one
    side of the split train uses (Keras's rule, or ``split="stratified"``)."""
    path = os.fspath(path)
    ds = c_void_p()
    _lib.check(lib.ct_dataset_open(byref(ds), path.encode()))
    try:
        if not validation_split:
            if subset is not None:
                raise _lib.InvalidArgument("subset needs a validation_split")
            return _describe(path, ds)
        if subset not in ("training", "validation") or split not in SPLITS:
            raise _lib.InvalidArgument("give subset='training' or 'validation' and split "
                                       "'keras' or 'stratified'")
        train, val = c_void_p(), c_void_p()
        _lib.check(lib.ct_dataset_split(ds, validation_split, SPLITS[split], seed, byref(train),
                                        byref(val)))
        try:
            return _describe(path, train if subset == "training" else val)
        finally:
            lib.ct_dataset_free(train)
            lib.ct_dataset_free(val)
    finally:
        lib.ct_dataset_free(ds)

# ---- inspect ----


def inspect(path: PathLike) -> Dict[str, Any]:
    """What a weights file holds (``cutune inspect``): its layout, Keras version, and every
    layer with its arrays' names, shapes and types. No weight is read."""
    f = POINTER(_lib.WeightsFile)()
    _lib.check(lib.ct_weights_inspect(os.fspath(path).encode(), byref(f)))
    try:
        w = f.contents
        layers = []
        for i in range(w.n_layers):
            layer = w.layers[i]
            arrays = [{"name": a.name.decode(), "shape": tuple(a.dims[:a.ndim]),
                       "dtype": a.dtype_name.decode()}
                      for a in (layer.arrays[j] for j in range(layer.n_arrays))]
            layers.append({"name": layer.name.decode(), "weights": arrays})
        return {"path": w.path.decode(), "format": lib.ct_weights_format_name(w.format).decode(),
                "keras_version": w.keras_version.decode(), "backend": w.backend.decode(),
                "layers": layers, "params": w.n_params, "cutune_model": bool(w.has_config),
                "checkpoint": bool(w.is_checkpoint)}
    finally:
        lib.ct_weights_file_free(f)

# ---- devices ----


class Devices(list):
    """The usable CUDA devices (dicts); when there are none, ``reason`` says why."""
    reason: Optional[str] = None


def devices() -> Devices:
    """CUDA devices cutune can use, as ``cutune devices`` lists them."""
    out = Devices()
    cap = 64
    infos = (_lib.DeviceInfo * cap)()
    count = c_int()
    status = lib.ct_cuda_devices(infos, cap, byref(count))
    if status != 0:
        out.reason = lib.ct_last_error().decode()
        return out
    for d in infos[:count.value]:
        out.append({"index": d.index, "name": d.name.decode(),
                    "compute_capability": (d.cc_major, d.cc_minor),
                    "total_memory": d.total_mem, "free_memory": d.free_mem,
                    "multiprocessors": d.sm_count, "bf16": bool(d.tensor_cores_bf16)})
    return out


__all__ = ["Advice", "Dataset", "Devices", "advise", "devices", "inspect", "scan"]
