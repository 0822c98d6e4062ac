"""cutune.train and cutune.load_model against the cutune command of the same build: the History
is log.csv, predictions are `cutune predict`'s CSV, metrics are `cutune evaluate`'s, callbacks
stop runs that resume, and errors raise with the library's message."""
import csv
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import cutune
from conftest import QUICK, quick_cli_flags, run_cli


def read_log(run):
    with open(os.path.join(run, "log.csv")) as f:
        return list(csv.DictReader(f))


def test_history_is_log_csv(data, tmp_path):
    run = str(tmp_path / "run")
    h = cutune.train(data=data["train"], val=data["val"], out=run, epochs=3, verbose=0, **QUICK)
    rows = read_log(run)
    assert h.epoch == [0, 1, 2]
    assert len(rows) == 3
    for key in ("loss", "acc", "lr", "val_loss", "val_acc"):
        assert h.history[key] == [float(r[key]) for r in rows], key
    assert h.final_path == os.path.join(run, "final.h5")
    assert os.path.exists(h.best_path)
    assert not h.interrupted


def test_same_run_as_the_command(data, tmp_path, cli):
    """The same flags through Python and through the command write the same log."""
    py_run, cli_run = str(tmp_path / "py"), str(tmp_path / "cli")
    cutune.train(data=data["train"], out=py_run, epochs=2, verbose=0, horizontal_flip=True,
                 zoom_range=(0.9, 1.1), **QUICK)
    r = run_cli(cli, "train", "--data", data["train"], "--out", cli_run, "--epochs", "2",
                "--verbose", "0", "--horizontal-flip", "--zoom-range", "0.9,1.1",
                *quick_cli_flags())
    assert r.returncode == 0, r.stderr
    assert read_log(py_run) == read_log(cli_run)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("trained") / "run")
    cutune.train(data=data["train"], val=data["val"], out=run, epochs=2, verbose=0, **QUICK)
    return os.path.join(run, "final.h5")


def test_predictions_are_the_commands_csv(trained, data, tmp_path, cli):
    out = str(tmp_path / "preds.csv")
    r = run_cli(cli, "predict", "--model", trained, "--data", data["val"], "--out", out,
                "--device", "cpu", "--tta", "hflip")
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        rows = list(csv.reader(f))
    model = cutune.load_model(trained, device="cpu")
    probs, names = model.predict(data["val"], tta=["hflip"], return_names=True)
    assert rows[0] == ["filename"] + model.class_names
    assert names == [r[0] for r in rows[1:]]
    np.testing.assert_array_equal(probs, np.array([[float(v) for v in r[1:]] for r in rows[1:]],
                                                  dtype=np.float32))


def test_arrays_predict_as_files(trained, data):
    """Images given as arrays (resized as Keras's load_img does) predict what the files do."""
    model = cutune.load_model(trained, device="cpu")
    probs, names = model.predict(data["val"], return_names=True)
    h, w, _ = model.input_shape
    images = np.stack([np.asarray(Image.open(os.path.join(data["val"], n)).convert("RGB")
                                  .resize((w, h), Image.NEAREST)) for n in names])
    np.testing.assert_array_equal(model.predict(images.astype(np.float32)), probs)
    with pytest.raises(cutune.InvalidArgument, match="resize to the model's input size"):
        model.predict(np.zeros((1, h + 1, w, 3), np.float32))


def test_evaluate_is_the_commands(trained, data, cli):
    model = cutune.load_model(trained, device="cpu")
    m = model.evaluate(data["val"])
    r = run_cli(cli, "evaluate", "--model", trained, "--data", data["val"], "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert m["report"] in r.stdout
    assert m["samples"] == 8 and m["class_names"] == ["a", "b"]
    assert m["confusion"].sum() == 8


def test_summary_and_keras_code(trained, capsys):
    model = cutune.load_model(trained, device="cpu")
    model.summary()
    out = capsys.readouterr().out
    assert "block5_conv3 (Conv2D)" in out and "Total params" in out
    code = model.keras_code()
    assert "model.load_weights(" in code and trained in code


def test_progress_lines(data, tmp_path, capsys):
    cutune.train(data=data["train"], val=data["val"], out=str(tmp_path / "run"), epochs=2,
                 verbose=2, **QUICK)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert lines[1].startswith("4/4 - ") and " - val_acc: " in lines[1]


class StopAfter(cutune.Callback):
    def __init__(self, epochs=None, batches=None):
        super().__init__()
        self.epochs, self.batches, self.seen = epochs, batches, 0

    def on_epoch_end(self, epoch, logs=None):
        if self.epochs is not None and epoch + 1 >= self.epochs:
            self.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.batches is not None and self.seen >= self.batches:
            self.stop_training = True


def test_callback_stops_after_an_epoch(data, tmp_path):
    h = cutune.train(data=data["train"], out=str(tmp_path / "run"), epochs=5, verbose=0,
                     callbacks=[StopAfter(epochs=2)], **QUICK)
    assert h.epoch == [0, 1] and not h.interrupted and os.path.exists(h.final_path)


def test_callback_stops_mid_epoch_and_resume_finishes_it(data, tmp_path):
    run = str(tmp_path / "run")
    h = cutune.train(data=data["train"], out=run, epochs=3, verbose=0,
                     callbacks=[StopAfter(batches=6)], **QUICK)
    assert h.interrupted and h.epoch == [0]
    assert os.path.exists(os.path.join(run, "checkpoint.h5"))
    h2 = cutune.train(data=data["train"], out=run, epochs=3, verbose=0, resume=True, **QUICK)
    assert h2.epoch == [1, 2]
    whole = str(tmp_path / "whole")
    cutune.train(data=data["train"], out=whole, epochs=3, verbose=0, **QUICK)
    assert read_log(run) == read_log(whole)


def test_resume_from_the_folder_alone(data, tmp_path):
    run = str(tmp_path / "run")
    cutune.train(data=data["train"], out=run, epochs=1, verbose=0, horizontal_flip=True,
                 **QUICK)
    h = cutune.train(out=run, epochs=2, verbose=0, resume=True)
    assert h.epoch == [1]
    whole = str(tmp_path / "whole")
    cutune.train(data=data["train"], out=whole, epochs=2, verbose=0, horizontal_flip=True,
                 **QUICK)
    assert read_log(run) == read_log(whole)
    with pytest.raises(cutune.InvalidArgument, match="it has 'horizontal_flip = true'"):
        cutune.train(out=run, epochs=3, verbose=0, resume=True, horizontal_flip=False)


def test_an_exception_in_a_callback_is_raised(data, tmp_path):
    def boom(epoch, logs):
        raise RuntimeError("from the callback")
    with pytest.raises(RuntimeError, match="from the callback"):
        cutune.train(data=data["train"], out=str(tmp_path / "run"), epochs=2, verbose=0,
                     callbacks=[cutune.LambdaCallback(on_epoch_end=boom)], **QUICK)


def test_errors_carry_the_message(data, tmp_path):
    with pytest.raises(cutune.InvalidArgument, match="--epochs: expected a whole number"):
        cutune.train(data=data["train"], out=str(tmp_path / "a"), epochs="many", **QUICK)
    with pytest.raises(cutune.InvalidArgument, match="unknown"):
        cutune.train(data=data["train"], out=str(tmp_path / "b"), no_such_flag=1, **QUICK)
    with pytest.raises(cutune.NotFound, match="nowhere"):
        cutune.train(data=str(tmp_path / "nowhere"), out=str(tmp_path / "c"), verbose=0,
                     **QUICK)
    with pytest.raises(cutune.Error, match="not-a-model.h5"):
        cutune.load_model(str(tmp_path / "not-a-model.h5"))


CTRL_C = textwrap.dedent("""
    import os, sys, cutune
    sys.path.insert(0, {tests!r})
    from conftest import QUICK
    class Mark(cutune.Callback):
        def on_train_batch_end(self, batch, logs=None):
            open({mark!r}, "w").close()
            import time; time.sleep(0.2)
    try:
        cutune.train(data={data!r}, out={run!r}, epochs=50, verbose=0, callbacks=[Mark()],
                     **QUICK)
    except KeyboardInterrupt as e:
        print("KeyboardInterrupt:", e)
        sys.exit(130)
""")


def test_ctrl_c_writes_the_checkpoint_and_raises(data, tmp_path):
    run, mark = str(tmp_path / "run"), str(tmp_path / "started")
    script = CTRL_C.format(tests=os.path.dirname(__file__), mark=mark, data=data["train"],
                           run=run)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(600):
        if os.path.exists(mark) or p.poll() is not None:
            break
        subprocess.run(["sleep", "0.05"])
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 130, out
    assert "KeyboardInterrupt" in out
    assert os.path.exists(os.path.join(run, "checkpoint.h5"))
