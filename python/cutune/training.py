"""Training from Python: ``cutune.train(...)`` is ``cutune train`` with keyword arguments.

Every keyword is a flag of ``cutune train`` (``batch_size=32`` or ``batch_size="32"`` is
``--batch-size 32``; ``True`` turns a switch on, ``False`` leaves it off; a tuple or list is
written comma-separated, a dict of class weights in class order). The library runs the whole
fit, writes the run folder and calls back after every batch and epoch: those calls feed Keras's
progress bar, the ``History`` and the user's callbacks, which may stop the run.

Ctrl-C (SIGINT, a notebook's interrupt) finishes the step, writes the checkpoint and raises
KeyboardInterrupt; ``train(..., resume=True)`` with the same arguments continues the run.
"""
from __future__ import annotations

import math
import os
import signal
import threading
from ctypes import byref, c_char_p, c_void_p
from typing import Any, Dict, Iterable, List, Optional

from . import _lib
from ._lib import lib
from ._progress import Progbar


class Callback:
    """Keras's callback interface, as far as a cutune run calls it. Set ``self.stop_training``
    to stop: after an epoch the run ends as EarlyStopping ends it (final.h5 written); after a
    batch it stops as Ctrl-C does (checkpoint written; ``resume=True`` continues)."""

    def __init__(self) -> None:
        self.stop_training = False
        self.params: Dict[str, Any] = {}

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        """After each epoch: loss, acc, lr and, with validation data, val_loss and val_acc."""

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, float]] = None) -> None:
        """After each batch: the epoch's running loss and acc."""


class LambdaCallback(Callback):
    """Keras's LambdaCallback: plain functions for the two events."""

    def __init__(self, on_epoch_end=None, on_train_batch_end=None) -> None:
        super().__init__()
        if on_epoch_end is not None:
            self.on_epoch_end = on_epoch_end  # type: ignore[method-assign]
        if on_train_batch_end is not None:
            self.on_train_batch_end = on_train_batch_end  # type: ignore[method-assign]


class History(Callback):
    """What ``train`` returns, as Keras's ``fit`` does: ``history`` maps each metric of log.csv
    to its per-epoch values, ``epoch`` lists the epochs run (0-based), and the run's outcome
    follows: ``best_path``, ``final_path``, ``best_epoch``, ``stopped_early``, ``interrupted``."""

    def __init__(self) -> None:
        super().__init__()
        self.history: Dict[str, List[float]] = {}
        self.epoch: List[int] = []
        self.best_path: Optional[str] = None
        self.final_path: Optional[str] = None
        self.best_epoch = -1
        self.stopped_early = False
        self.interrupted = False

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


def flag_value(value: Any) -> Optional[str]:
    """A keyword's value as the flag's text; None for a switch left off."""
    if value is None or value is False:
        return None
    if value is True:
        return "1"
    if isinstance(value, dict):  # class weights {0: 1.0, 1: 2.5}
        return ",".join(repr(float(value[k])) for k in sorted(value))
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def make_config(flags: Dict[str, Any]) -> c_void_p:
    """A ct_train_config with `flags` applied (the library checks names, values and the
    settings that go together); the caller frees it."""
    config = c_void_p()
    _lib.check(lib.ct_train_config_new(byref(config)))
    if flags.get("resume") and flags.get("out") is not None:
        # A run continues from its folder's record; the flags given must agree with it.
        status = lib.ct_train_config_read_run(config, _lib.text(flags["out"]))
        if status != 0:
            lib.ct_train_config_free(config)
            _lib.check(status)
    given = {k.replace("_", "-"): flag_value(v) for k, v in flags.items()}
    names = (c_char_p * max(len(given), 1))(*[k.encode() for k in given])
    values = (c_char_p * max(len(given), 1))(*[_lib.text(v) for v in given.values()])
    status = lib.ct_train_config_apply(config, len(given), names, values)
    if status != 0:
        lib.ct_train_config_free(config)
        _lib.check(status)
    return config


class _Run:
    """The library's callbacks for one call of train: the progress bar, History and the user's
    callbacks. An exception in a callback stops the run and is raised again afterwards."""

    def __init__(self, callbacks: Iterable[Callback], verbose: int) -> None:
        self.history = History()
        self.callbacks = [self.history] + list(callbacks)
        self.bar = Progbar(verbose)
        self.error: Optional[BaseException] = None
        self.stopped_by_callback = False
        self.c_callbacks = _lib.TrainCallbacks(None, _lib.EPOCH_FN(self._epoch_end),
                                               _lib.BATCH_FN(self._batch_end))

    def _stop(self) -> bool:
        stop = any(cb.stop_training for cb in self.callbacks)
        self.stopped_by_callback |= stop
        return stop

    def _batch_end(self, _user, logs_p) -> bool:
        try:
            logs = logs_p.contents
            if logs.batch == 0:
                self.bar.epoch_begin(logs.epoch, self.history.params.get("epochs", 0))
            metrics = {"loss": logs.loss, "acc": logs.acc}
            self.bar.batch_end(logs.batch + 1, logs.steps, metrics)
            self.history.params["steps"] = logs.steps
            for cb in self.callbacks:
                cb.on_train_batch_end(logs.batch, dict(metrics))
            return self._stop()
        except BaseException as e:  # raised again once the library has stopped
            self.error = e
            return True

    def _epoch_end(self, _user, logs_p) -> bool:
        try:
            logs = logs_p.contents
            metrics = {"loss": logs.loss, "acc": logs.acc}
            if not math.isnan(logs.val_loss):
                metrics.update(val_loss=logs.val_loss, val_acc=logs.val_acc)
            self.bar.epoch_end(metrics, logs.seconds)
            metrics["lr"] = logs.lr
            for cb in self.callbacks:
                cb.on_epoch_end(logs.epoch, dict(metrics))
            return self._stop()
        except BaseException as e:
            self.error = e
            return True


class _CtrlC:
    """SIGINT and SIGTERM go to the library while it trains (it stops after the step and
    writes the checkpoint); Python's handlers come back afterwards. Only the main thread can
    change handlers: elsewhere the process keeps its own."""

    def __enter__(self):
        self.saved = None
        if threading.current_thread() is threading.main_thread():
            self.saved = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
            lib.ct_train_install_signal_handlers()
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            signal.signal(signal.SIGINT, self.saved[0])
            signal.signal(signal.SIGTERM, self.saved[1])


def _launched_rank() -> int:
    """This process's rank as its launcher says (mpirun, srun, torchrun), 0 without one: the
    ranks of a data-parallel run but 0 draw no progress bar, as the library prints nothing there."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        value = os.environ.get("SLURM_PROCID", "")
        return int(value) if value.isdigit() else 0
    return 0


def train(data: Optional[str] = None, out: Optional[str] = None, *,
          callbacks: Iterable[Callback] = (), verbose: int = 1, **flags: Any) -> History:
    """Fine-tunes as ``cutune train`` does and returns the run's History.

    ``data`` (class folders or iceberg JSON) and ``out`` (the run folder) as the flags; every
    other flag by keyword: ``head="mri", strategy="head", epochs=20, optimizer="adam",
    lr=2e-4, horizontal_flip=True, zoom_range=0.2, val="mri/test", resume=True, ...``.
    ``folds=K`` (with ``test=PATH``) trains K folds and returns a dict of their results.
    Raises cutune.InvalidArgument for a bad flag or value (with the CLI's message),
    cutune.NotFound, cutune.FormatError, cutune.NumericError, cutune.DeviceError, and
    KeyboardInterrupt after Ctrl-C (the checkpoint is written first)."""
    if verbose not in (0, 1, 2):
        raise _lib.InvalidArgument(f"verbose: expected 0, 1 or 2, not {verbose!r}")
    given = dict(flags, data=data, out=out, verbose=0)
    given = {k: v for k, v in given.items() if v is not None}
    folds = given.get("folds")
    config = make_config(given)
    run = _Run(callbacks, verbose if _launched_rank() == 0 else 0)
    run.history.params["epochs"] = int(given.get("epochs", 10))
    try:
        lib.ct_train_config_set_callbacks(config, byref(run.c_callbacks))
        with _CtrlC():
            if folds:
                return _train_folds(config, int(folds), given.get("test"), run)
            result = _lib.TrainResult()
            status = lib.ct_train(config, byref(result))
    finally:
        lib.ct_train_config_free(config)
    return _finish(run, status, result)


def _finish(run: _Run, status: int, result: _lib.TrainResult) -> History:
    if run.error is not None:
        raise run.error
    h = run.history
    h.interrupted = status == _lib.INTERRUPTED or result.interrupted
    if status != 0 and not (status == _lib.INTERRUPTED and run.stopped_by_callback):
        raise _lib.error(status)
    h.best_path = result.best_path.decode() or None
    h.final_path = result.final_path.decode() or None
    h.best_epoch = result.best_epoch
    h.stopped_early = bool(result.stopped_early)
    return h


def _train_folds(config: c_void_p, folds: int, test: Optional[str], run: _Run) -> Dict:
    result = _lib.FoldsResult()
    status = lib.ct_train_folds(config, folds, _lib.text(test), byref(result))
    if run.error is not None:
        raise run.error
    _lib.check(status)
    per_fold = [{"n_train": f.n_train, "n_val": f.n_val, "epochs_run": f.epochs_run,
                 "stopped_early": bool(f.stopped_early), "best_epoch": f.best_epoch,
                 "best_val_loss": f.best_val_loss, "best_val_acc": f.best_val_acc}
                for f in result.fold[:result.folds]]
    return {"folds": per_fold, "mean_val_loss": result.mean_val_loss,
            "mean_val_acc": result.mean_val_acc, "history": run.history,
            "predictions_path": result.predictions_path.decode() or None}


def train_help() -> str:
    """``cutune train --help``'s list of settings: every keyword ``train`` takes."""
    return _lib.captured(lambda f: lib.ct_train_print_help(f))


__all__ = ["Callback", "History", "LambdaCallback", "train", "train_help"]
