"""The binding's floor: libcutune loaded with ctypes, the C structs it exchanges, and errors.

Only what the public headers (include/cutune/*.h) declare is used. Each Structure mirrors its C
struct field by field and names it in ``_c_name_``; the test suite compiles a program against
the headers that prints every size and offset and compares them with these classes, so a
header change that is not carried here fails a test instead of corrupting memory. Enum values
the binding relies on are listed in ``ENUMS`` and checked the same way.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float, c_int,
                    c_int64, c_long, c_size_t, c_uint64, c_void_p)
from pathlib import Path
from typing import Callable, Optional

# ---- the library ----


def _candidates() -> list:
    """Where libcutune may be: $CUTUNE_LIBRARY, beside this package (a wheel), the system."""
    found = []
    env = os.environ.get("CUTUNE_LIBRARY")
    if env:
        found.append(env)
    here = Path(__file__).resolve().parent
    found += [str(p) for p in sorted(here.glob("libcutune.so*"))]
    system = ctypes.util.find_library("cutune")
    if system:
        found.append(system)
    return found


def _load() -> ctypes.CDLL:
    tried = _candidates()
    errors = []
    for path in tried:
        try:
            return ctypes.CDLL(path)
        except OSError as e:  # try the next place
            errors.append(f"{path}: {e}")
    where = "; ".join(errors) if errors else "nothing found"
    raise ImportError(
        "cutune: cannot load libcutune (" + where + "). Install the package with "
        "`pip install .` in the cutune checkout, or point CUTUNE_LIBRARY at libcutune.so")


lib = _load()
libc = ctypes.CDLL(None)

# ---- status codes and errors ----

lib.ct_last_error.restype = c_char_p
lib.ct_status_name.restype = c_char_p
lib.ct_status_name.argtypes = [c_int]
lib.ct_version.restype = c_char_p


class Error(Exception):
    """A cutune failure: ``status`` is the code's name (``CT_EFORMAT``), the text says which
    file, setting or layer and why."""

    def __init__(self, message: str, status: str = "CT_EINVAL"):
        super().__init__(message)
        self.status = status


class InvalidArgument(Error, ValueError):
    """A bad setting, value or combination (the CLI's usage errors)."""


class NotFound(Error, FileNotFoundError):
    """A file, folder or weights file that is not there."""


class FormatError(Error, ValueError):
    """A damaged or unexpected file (image, JSON, HDF5)."""


class NumericError(Error, ArithmeticError):
    """A NaN or infinite loss or gradient; the last good checkpoint is kept."""


class DeviceError(Error, RuntimeError):
    """No usable GPU, a device failure, or device memory exhausted (the message names the
    largest batch size that fits)."""


_CLASSES = {
    "CT_EINVAL": InvalidArgument, "CT_ESHAPE": InvalidArgument,
    "CT_EUNSUPPORTED": InvalidArgument, "CT_ENOTFOUND": NotFound, "CT_EFORMAT": FormatError,
    "CT_ENUMERIC": NumericError, "CT_ENODEV": DeviceError, "CT_EDEVICE": DeviceError,
    "CT_EDEVMEM": DeviceError,
}


def error(status: int) -> Exception:
    """The Python exception for a failed call, carrying ct_last_error()'s message."""
    name = lib.ct_status_name(status).decode()
    message = lib.ct_last_error().decode(errors="replace")
    if name == "CT_ENOMEM":
        return MemoryError(message)
    if name == "CT_EINTR":
        return KeyboardInterrupt(message)
    return _CLASSES.get(name, Error)(message, name)


def check(status: int) -> None:
    if status != 0:
        raise error(status)


def text(value) -> Optional[bytes]:
    """A Python value as the C API's text: None stays NULL."""
    if value is None:
        return None
    return str(value).encode()


def captured(write: Callable[[int], object]) -> str:
    """What ``write(FILE *)`` prints, as a string (a memory stream, not the process's stdout,
    which a notebook does not show)."""
    buf, size = c_char_p(), c_size_t()
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        raise MemoryError("cannot open a memory stream")
    try:
        result = write(stream)
    finally:
        libc.fclose(stream)
    out = ctypes.string_at(buf, size.value).decode(errors="replace")
    libc.free(buf)
    if isinstance(result, int) and result != 0:
        raise error(result)
    return out


libc.open_memstream.restype = c_void_p
libc.open_memstream.argtypes = [c_void_p, c_void_p]
libc.fclose.argtypes = [c_void_p]
libc.free.argtypes = [c_void_p]

# ---- structs (include/cutune/*.h) ----


class EpochLogs(Structure):
    _c_name_ = "ct_epoch_logs"
    _fields_ = [("epoch", c_int), ("epochs", c_int), ("loss", c_double), ("acc", c_double),
                ("lr", c_double), ("val_loss", c_double), ("val_acc", c_double),
                ("seconds", c_double)]


class BatchLogs(Structure):
    _c_name_ = "ct_batch_logs"
    _fields_ = [("epoch", c_int), ("batch", c_long), ("steps", c_long), ("step", c_long),
                ("loss", c_double), ("acc", c_double)]


EPOCH_FN = ctypes.CFUNCTYPE(c_bool, c_void_p, POINTER(EpochLogs))
BATCH_FN = ctypes.CFUNCTYPE(c_bool, c_void_p, POINTER(BatchLogs))


class TrainCallbacks(Structure):
    _c_name_ = "ct_train_callbacks"
    _fields_ = [("user", c_void_p), ("on_epoch_end", EPOCH_FN), ("on_batch_end", BATCH_FN)]


class TrainResult(Structure):
    _c_name_ = "ct_train_result"
    _fields_ = [("epochs_run", c_int), ("best_epoch", c_int), ("best_value", c_double),
                ("final_loss", c_double), ("final_acc", c_double),
                ("final_val_loss", c_double), ("final_val_acc", c_double),
                ("stopped_early", c_bool), ("interrupted", c_bool),
                ("stopped_by_callback", c_bool), ("best_path", c_char * 4200),
                ("final_path", c_char * 4200)]


MAX_FOLDS = 100


class FoldResult(Structure):
    _c_name_ = "ct_fold_result"
    _fields_ = [("n_train", c_size_t), ("n_val", c_size_t), ("epochs_run", c_int),
                ("stopped_early", c_bool), ("best_epoch", c_int), ("best_val_loss", c_double),
                ("best_val_acc", c_double)]


class FoldsResult(Structure):
    _c_name_ = "ct_folds_result"
    _fields_ = [("folds", c_int), ("fold", FoldResult * MAX_FOLDS),
                ("mean_val_loss", c_double), ("mean_val_acc", c_double),
                ("test_rows", c_size_t), ("predictions_path", c_char * 4200)]


class Metrics(Structure):
    _c_name_ = "ct_metrics"
    _fields_ = [("n", c_long), ("k", c_int), ("loss", c_double), ("accuracy", c_double),
                ("auc", c_double), ("confusion", POINTER(c_long)),
                ("precision", POINTER(c_double)), ("recall", POINTER(c_double)),
                ("class_names", POINTER(c_char_p))]


class PredictConfig(Structure):
    _c_name_ = "ct_predict_config"
    _fields_ = [("model", c_char_p), ("data", c_char_p), ("out", c_char_p),
                ("tta_hflip", c_bool), ("tta_vflip", c_bool), ("batch_size", c_int),
                ("threads", c_int), ("device", c_char_p), ("precision", c_char_p),
                ("augment_on", c_char_p), ("skip_bad", c_bool), ("na_policy", c_int),
                ("na_value", c_float), ("head", c_char_p), ("input_size", c_int),
                ("preprocess", c_char_p), ("classes", c_char_p), ("png16", c_int),
                ("png16_noted", c_bool)]


class Predictions(Structure):
    _c_name_ = "ct_predictions"
    _fields_ = [("rows", c_size_t), ("outputs", c_int), ("probs", POINTER(c_float)),
                ("names", POINTER(c_char_p)), ("columns", POINTER(c_char_p)),
                ("kaggle", c_bool)]


class ModelConfig(Structure):
    _c_name_ = "ct_model_config"
    _fields_ = [("backbone", c_char_p), ("input_h", c_int), ("input_w", c_int),
                ("input_c", c_int), ("aux_dim", c_int), ("max_batch", c_int),
                ("head", c_char_p), ("seed", c_uint64), ("freeze_to", c_char_p)]


MAX_CLASSES = 256
ADVISE_DEPTHS = 3


class ProbeScore(Structure):
    _c_name_ = "ct_probe_score"
    _fields_ = [("layer", c_char_p), ("dim", c_int), ("acc", c_double), ("se", c_double)]


class Advice(Structure):
    _c_name_ = "ct_advice"
    _fields_ = [("n", c_size_t), ("k", c_int), ("counts", c_size_t * MAX_CLASSES),
                ("class_names", (c_char * 64) * MAX_CLASSES), ("iceberg", c_bool),
                ("per_class", c_double), ("large", c_bool), ("probed", c_bool),
                ("weights_note", c_char * 1024), ("weights_missing", c_bool),
                ("input_size", c_int),
                ("probe_n", c_size_t), ("probe_folds", c_int), ("baseline", c_double),
                ("depth", ProbeScore * ADVISE_DEPTHS), ("similarity", c_double),
                ("similar", c_bool), ("seconds", c_double), ("strategy", c_int),
                ("freeze_to", c_char_p), ("optimizer", c_int), ("lr", c_float),
                ("momentum", c_float), ("body_lr_mult", c_float), ("nesterov", c_bool),
                ("warmup_epochs", c_int), ("epochs", c_int), ("patience", c_int),
                ("horizontal_flip", c_bool), ("vertical_flip", c_bool),
                ("zoom_range", c_float), ("rotation_range", c_float), ("balanced", c_bool),
                ("summary", c_char * 160), ("reasoning", c_char * 6144),
                ("command", c_char * 4096)]


class DeviceInfo(Structure):
    _c_name_ = "ct_device_info"
    _fields_ = [("index", c_int), ("name", c_char * 256), ("cc_major", c_int),
                ("cc_minor", c_int), ("total_mem", c_size_t), ("free_mem", c_size_t),
                ("sm_count", c_int), ("tensor_cores_bf16", c_bool)]


NAME_MAX, PATH_MAX, MAX_DIMS = 256, 4096, 8


class WeightsArray(Structure):
    _c_name_ = "ct_weights_array"
    _fields_ = [("name", c_char * NAME_MAX), ("path", c_char * PATH_MAX), ("ndim", c_int),
                ("dims", c_int64 * MAX_DIMS), ("count", c_size_t), ("dtype", c_int),
                ("dtype_name", c_char * 16)]


class WeightsLayer(Structure):
    _c_name_ = "ct_weights_layer"
    _fields_ = [("name", c_char * NAME_MAX), ("keras_class", c_char * 64),
                ("class_index", c_int), ("n_arrays", c_int),
                ("arrays", POINTER(WeightsArray))]


class WeightsFile(Structure):
    _c_name_ = "ct_weights_file"
    _fields_ = [("path", c_char * PATH_MAX), ("format", c_int), ("vlen_strings", c_bool),
                ("split_names", c_bool), ("names_known", c_bool),
                ("keras_version", c_char * 32), ("backend", c_char * 32),
                ("n_layers", c_int), ("layers", POINTER(WeightsLayer)), ("n_arrays", c_int),
                ("n_params", c_size_t), ("has_config", c_bool), ("is_checkpoint", c_bool)]


STRUCTS = [EpochLogs, BatchLogs, TrainCallbacks, TrainResult, FoldResult, FoldsResult,
           Metrics, PredictConfig, Predictions, ModelConfig, ProbeScore, Advice, DeviceInfo,
           WeightsArray, WeightsLayer, WeightsFile]

# Enum values read by the binding, by their C names (checked against the headers).
STRATEGIES = ("none", "auto", "head", "top", "all", "deep")
OPTIMIZERS = ("sgd", "adam", "adamw")
ENUMS = {
    "CT_STRATEGY_NONE": 0, "CT_STRATEGY_AUTO": 1, "CT_STRATEGY_HEAD": 2, "CT_STRATEGY_TOP": 3,
    "CT_STRATEGY_ALL": 4, "CT_STRATEGY_DEEP": 5, "CT_OPT_SGD": 0, "CT_OPT_ADAM": 1,
    "CT_OPT_ADAMW": 2, "CT_NA_MEAN": 0, "CT_NA_MEDIAN": 1, "CT_NA_FFILL": 2, "CT_NA_VALUE": 3,
    "CT_NA_ERROR": 4, "CT_MAX_CLASSES": MAX_CLASSES, "CT_MAX_FOLDS": MAX_FOLDS,
    "CT_ADVISE_DEPTHS": ADVISE_DEPTHS, "CT_WEIGHTS_NAME_MAX": NAME_MAX,
    "CT_WEIGHTS_PATH_MAX": PATH_MAX, "CT_WEIGHTS_MAX_DIMS": MAX_DIMS, "CT_EINTR": 11,
}
INTERRUPTED = ENUMS["CT_EINTR"]

# ---- functions ----


def _declare(name: str, restype, *argtypes) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_P = c_void_p  # opaque handles: ct_train_config *, ct_model *, ct_dataset *, FILE *
for _name, _res, _args in [
    ("ct_train_config_new", c_int, [POINTER(_P)]),
    ("ct_train_config_free", None, [_P]),
    ("ct_train_config_apply", c_int, [_P, c_int, POINTER(c_char_p), POINTER(c_char_p)]),
    ("ct_train_config_read_run", c_int, [_P, c_char_p]),
    ("ct_train_config_set_callbacks", None, [_P, POINTER(TrainCallbacks)]),
    ("ct_train", c_int, [_P, POINTER(TrainResult)]),
    ("ct_train_folds", c_int, [_P, c_int, c_char_p, POINTER(FoldsResult)]),
    ("ct_train_install_signal_handlers", None, []),
    ("ct_train_request_stop", None, []),
    ("ct_train_print_help", None, [_P]),
    ("ct_predict_config_defaults", None, [POINTER(PredictConfig)]),
    ("ct_evaluate", c_int, [POINTER(PredictConfig), POINTER(Metrics)]),
    ("ct_metrics_free", None, [POINTER(Metrics)]),
    ("ct_metrics_print", None, [_P, POINTER(Metrics), POINTER(c_char_p)]),
    ("ct_predict_arrays", c_int, [POINTER(PredictConfig), POINTER(Predictions)]),
    ("ct_predictions_free", None, [POINTER(Predictions)]),
    ("ct_model_create", c_int, [POINTER(_P), POINTER(ModelConfig), c_char_p]),
    ("ct_model_load", c_int, [POINTER(_P), c_char_p, c_char_p, c_int]),
    ("ct_model_free", None, [_P]),
    ("ct_model_load_weights", c_int, [_P, c_char_p]),
    ("ct_model_save", c_int, [_P, c_char_p]),
    ("ct_model_get_config", POINTER(ModelConfig), [_P]),
    ("ct_model_num_outputs", c_int, [_P]),
    ("ct_model_class_name", c_char_p, [_P, c_int]),
    ("ct_model_num_params", c_size_t, [_P, POINTER(c_size_t)]),
    ("ct_model_freeze_to", c_int, [_P, c_char_p]),
    ("ct_model_summary", None, [_P, _P]),
    ("ct_model_predict_pixels", c_int, [_P, POINTER(c_float), POINTER(c_float), c_int,
                                        POINTER(c_float)]),
    ("ct_model_predict_image", c_int, [_P, c_char_p, POINTER(c_float)]),
    ("ct_advise_config_new", c_int, [POINTER(_P)]),
    ("ct_advise_config_free", None, [_P]),
    ("ct_advise_config_set", c_int, [_P, c_char_p, c_char_p]),
    ("ct_advise", c_int, [_P, POINTER(Advice)]),
    ("ct_advise_print", None, [_P, POINTER(Advice)]),
    ("ct_dataset_open", c_int, [POINTER(_P), c_char_p]),
    ("ct_dataset_split", c_int, [_P, c_double, c_int, c_uint64, POINTER(_P), POINTER(_P)]),
    ("ct_dataset_free", None, [_P]),
    ("ct_dataset_count", c_size_t, [_P]),
    ("ct_dataset_num_classes", c_int, [_P]),
    ("ct_dataset_class_name", c_char_p, [_P, c_int]),
    ("ct_dataset_class_count", c_size_t, [_P, c_int]),
    ("ct_dataset_labelled", c_bool, [_P]),
    ("ct_dataset_label", c_int, [_P, c_size_t]),
    ("ct_dataset_name", c_char_p, [_P, c_size_t]),
    ("ct_dataset_aux_dim", c_int, [_P]),
    ("ct_dataset_na_count", c_size_t, [_P]),
    ("ct_dataset_ignored_count", c_size_t, [_P]),
    ("ct_dataset_ignored", c_char_p, [_P, c_size_t]),
    ("ct_dataset_found_message", None, [_P, c_char_p, c_size_t]),
    ("ct_weights_inspect", c_int, [c_char_p, POINTER(POINTER(WeightsFile))]),
    ("ct_weights_file_free", None, [POINTER(WeightsFile)]),
    ("ct_weights_format_name", c_char_p, [c_int]),
    ("ct_weights_keras_code", c_int, [c_char_p, _P]),
    ("ct_cuda_compiled", c_bool, []),
    ("ct_cuda_devices", c_int, [POINTER(DeviceInfo), c_int, POINTER(c_int)]),
]:
    _declare(_name, _res, *_args)
