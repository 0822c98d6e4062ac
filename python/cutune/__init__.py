"""cutune from Python: fine-tune an ImageNet VGG16 or VGG19 on small image datasets with the
words and defaults of Keras, on a GPU (cuDNN) or the CPU.

    import cutune
    history = cutune.train(data="mri/train", val="mri/test", out="runs/mri", head="mri",
                           strategy="head", optimizer="adam", lr=2e-4, epochs=20,
                           horizontal_flip=True, zoom_range=0.2)
    model = cutune.load_model("runs/mri/best.h5")
    probs, names = model.predict("mri/test", return_names=True)

The package is a thin layer over libcutune's C API (ctypes): the same library the ``cutune``
command runs, so a run from Python and one from the shell write the same files.
"""
from ._lib import (DeviceError, Error, FormatError, InvalidArgument, NotFound, NumericError,
                   lib as _c)
from .models import Model, load_model
from .tools import Advice, Dataset, Devices, advise, devices, inspect, scan
from .training import Callback, History, LambdaCallback, train, train_help

__version__ = _c.ct_version().decode()

__all__ = [
    "Advice", "Callback", "Dataset", "DeviceError", "Devices", "Error", "FormatError",
    "History", "InvalidArgument", "LambdaCallback", "Model", "NotFound", "NumericError",
    "advise", "devices", "inspect", "load_model", "scan", "train", "train_help",
]
