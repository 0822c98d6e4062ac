#!/usr/bin/env python3
"""Reference values for cutune's training-loop parts, computed with scikit-learn and Keras.

Writes tests/fixtures/train_parts.txt, which tests/test_train_parts.c compares against:
  * metrics: accuracy, log loss, ROC AUC (ties included), confusion matrix, per-class precision
    and recall from scikit-learn, for a binary (sigmoid) and a 3-class (softmax) case;
  * EarlyStopping and ReduceLROnPlateau: Keras's own callbacks fed fixed sequences of monitored
    values, recording the epoch training stops at and the learning rate after each epoch.

Run from the repository root (needs `pip install numpy scikit-learn keras torch`):
    KERAS_BACKEND=torch python3 tests/reference/train_parts_reference.py
Line format (as the golden fixtures): <name> <size> 1 <size> v0 v1 ...
"""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
from sklearn.metrics import (accuracy_score, confusion_matrix, log_loss, precision_score,
                             recall_score, roc_auc_score)
import keras

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "train_parts.txt")
lines = ["# cutune training-parts reference: tests/reference/train_parts_reference.py, "
         "scikit-learn and keras %s" % keras.__version__]


def put(name, values):
    v = np.asarray(values, dtype=np.float64).ravel()
    lines.append("%s %d 1 %d %s" % (name, v.size, v.size, " ".join("%.17g" % x for x in v)))


rng = np.random.default_rng(20261122)

# Binary: probabilities on a 0.05 grid (so ROC AUC sees ties), never exactly 0 or 1.
n = 40
y = rng.integers(0, 2, n)
p = np.clip(np.round((0.35 * y + 0.65 * rng.random(n)) / 0.05) * 0.05, 0.05, 0.95)
p = p.astype(np.float32).astype(np.float64)
w = rng.choice([0.5, 1.0, 2.0], n)
pred = (p >= 0.5).astype(int)
put("bin/probs", p)
put("bin/labels", y)
put("bin/weights", w)
put("bin/log_loss", [log_loss(y, p, labels=[0, 1])])
l = -(y * np.log(p) + (1 - y) * np.log(1 - p))
put("bin/weighted_loss", [np.sum(w * l) / n])  # Keras: weighted sum over the batch size
put("bin/accuracy", [accuracy_score(y, pred)])
put("bin/weighted_accuracy", [accuracy_score(y, pred, sample_weight=w)])
put("bin/auc", [roc_auc_score(y, p)])
put("bin/confusion", confusion_matrix(y, pred, labels=[0, 1]))
put("bin/precision", precision_score(y, pred, average=None, labels=[0, 1], zero_division=np.nan))
put("bin/recall", recall_score(y, pred, average=None, labels=[0, 1], zero_division=np.nan))

# Categorical, 3 classes; class 2 is never predicted, so its precision is undefined (NaN).
n = 30
yc = rng.integers(0, 3, n)
logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[yc]
logits[:, 2] -= 10.0
pc = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
pc = pc.astype(np.float32).astype(np.float64)
predc = pc.argmax(1)
put("cat/probs", pc)
put("cat/labels", np.eye(3)[yc])
put("cat/log_loss", [log_loss(yc, pc, labels=[0, 1, 2])])
put("cat/accuracy", [accuracy_score(yc, predc)])
put("cat/confusion", confusion_matrix(yc, predc, labels=[0, 1, 2]))
put("cat/precision", precision_score(yc, predc, average=None, labels=[0, 1, 2],
                                     zero_division=np.nan))
put("cat/recall", recall_score(yc, predc, average=None, labels=[0, 1, 2], zero_division=np.nan))

# Keras callbacks on fixed sequences.
model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")

sequences = {
    "a": [1.0, 0.9, 0.895, 0.89, 0.88, 0.95, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75],
    "b": [0.5, 0.6, 0.55, 0.52, 0.45, 0.45, 0.46, 0.44, 0.47, 0.48, 0.49, 0.5],
}
es_cases = [  # name, sequence, monitor, kwargs
    ("es1", "a", "val_loss", dict(patience=2, min_delta=0.01)),
    ("es2", "a", "val_loss", dict(patience=0)),
    ("es3", "b", "val_acc", dict(patience=2, mode="max")),  # Keras 2 inferred max from "acc"
    ("es4", "a", "val_loss", dict(patience=1, baseline=0.8)),
    ("es5", "a", "val_loss", dict(patience=1, start_from_epoch=6)),
]
for name, seq, monitor, kw in es_cases:
    cb = keras.callbacks.EarlyStopping(monitor=monitor, **kw)
    cb.set_model(model)
    model.stop_training = False
    cb.on_train_begin()
    stopped = -1
    for epoch, v in enumerate(sequences[seq]):
        cb.on_epoch_end(epoch, {monitor: v})
        if model.stop_training:
            stopped = epoch
            break
    put("%s/stopped_epoch" % name, [stopped])

rl_cases = [
    ("rl1", "a", "val_loss", dict(factor=0.5, patience=2, cooldown=1, min_lr=0.01)),
    ("rl2", "b", "val_acc", dict(factor=0.1, patience=1, min_delta=0.02, mode="max")),
]
for name, seq, monitor, kw in rl_cases:
    model.optimizer.learning_rate.assign(0.1)
    cb = keras.callbacks.ReduceLROnPlateau(monitor=monitor, **kw)
    cb.set_model(model)
    cb.on_train_begin()
    lrs = []
    for epoch, v in enumerate(sequences[seq]):
        cb.on_epoch_end(epoch, {monitor: v})
        lrs.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    put("%s/lr" % name, lrs)
for key, seq in sequences.items():
    put("seq/" + key, seq)

with open(OUT, "w") as f:
    f.write("\n".join(lines) + "\n")
print("wrote", os.path.normpath(OUT), len(lines) - 1, "arrays")
