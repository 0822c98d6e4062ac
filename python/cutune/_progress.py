"""Keras's progress display for a training run driven from Python.

verbose=1 draws Keras's bar, updated in place (``\\r``) on a terminal and in a notebook, and
written once per epoch elsewhere; verbose=2 writes one line per epoch; 0 nothing. The numbers
come from the library's callbacks (the running means of the epoch, then the epoch's logs): this
module only formats them, as keras.utils.Progbar does.
"""
from __future__ import annotations

import sys
import time
from typing import Dict, Optional, TextIO


def _dynamic(stream: TextIO) -> bool:
    """Keras's test: a terminal, or an IPython kernel (Jupyter, Colab)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def _value(v: float) -> str:
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.4e}"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


class Progbar:
    """One epoch's bar: ``12/40 [=======>......................] - ETA: 3s - loss: 0.6931``."""

    WIDTH = 30

    def __init__(self, verbose: int, stream: Optional[TextIO] = None):
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.dynamic = _dynamic(self.stream)
        self.start = time.monotonic()
        self.steps = 0
        self.last_width = 0

    def epoch_begin(self, epoch: int, epochs: int) -> None:
        self.start = time.monotonic()
        self.last_width = 0
        if self.verbose:
            self.stream.write(f"Epoch {epoch + 1}/{epochs}\n")
            self.stream.flush()

    def _bar(self, current: int, total: int) -> str:
        digits = len(str(total))
        if current >= total:
            bar = "=" * self.WIDTH
        else:
            done = int(self.WIDTH * current / total)
            bar = "=" * max(done - 1, 0) + ">"
        return f"{current:{digits}d}/{total} [{bar:<{self.WIDTH}}]"

    def batch_end(self, current: int, total: int, metrics: Dict[str, float]) -> None:
        """After batch ``current`` (1-based) of ``total``: redraws the bar in place."""
        self.steps = total
        if self.verbose != 1 or not self.dynamic:
            return
        elapsed = time.monotonic() - self.start
        line = self._bar(current, total)
        if current < total:
            line += f" - ETA: {_duration(elapsed / current * (total - current))}"
        line += "".join(f" - {k}: {_value(v)}" for k, v in metrics.items())
        pad = " " * max(self.last_width - len(line), 0)
        self.last_width = len(line)
        self.stream.write("\r" + line + pad)
        self.stream.flush()

    def epoch_end(self, metrics: Dict[str, float], seconds: float) -> None:
        """The epoch's line with every metric, validation included, as Keras ends it."""
        if not self.verbose:
            return
        total = self.steps
        per_step = seconds / total if total else 0.0
        timing = f"{_duration(seconds)} {per_step * 1000:.0f}ms/step"
        shown = "".join(f" - {k}: {_value(v)}" for k, v in metrics.items())
        if self.verbose == 1:
            line = f"{self._bar(total, total)} - {timing}{shown}"
            pad = " " * max(self.last_width - len(line), 0)
            self.stream.write(("\r" if self.dynamic else "") + line + pad + "\n")
        else:
            self.stream.write(f"{total}/{total} - {timing}{shown}\n")
        self.stream.flush()
