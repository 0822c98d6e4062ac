"""cutune.scan, inspect, advise and devices against the commands of the same name."""
import os

import pytest

import cutune
from conftest import run_cli

FIXTURES = os.environ.get("CUTUNE_FIXTURES", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tests",
    "fixtures"))


def test_scan_is_keras_view(data, cli):
    ds = cutune.scan(data["train"])
    assert ds.samples == 16 and ds.class_indices == {"a": 0, "b": 1}
    assert ds.filenames[:2] == ["a/00.png", "a/01.png"]
    assert list(ds.classes) == [0] * 8 + [1] * 8
    r = run_cli(cli, "scan", "--data", data["train"])
    assert str(ds) in r.stdout  # "Found 16 images belonging to 2 classes."


def test_scan_split_as_keras(data):
    train = cutune.scan(data["train"], validation_split=0.25, subset="training")
    val = cutune.scan(data["train"], validation_split=0.25, subset="validation")
    # flow_from_directory: the first int(8 * 0.25) files of each class validate.
    assert val.filenames == ["a/00.png", "a/01.png", "b/00.png", "b/01.png"]
    assert train.samples == 12
    with pytest.raises(cutune.InvalidArgument):
        cutune.scan(data["train"], subset="training")


def test_scan_missing_folder_raises(tmp_path):
    with pytest.raises(cutune.NotFound, match="missing"):
        cutune.scan(str(tmp_path / "missing"))


def test_inspect_official_layout():
    info = cutune.inspect(os.path.join(FIXTURES, "keras1_vgg19_notop.h5"))
    names = [layer["name"] for layer in info["layers"]]
    assert "block5_conv4" in names and info["format"].startswith("Keras 1")
    conv = next(layer for layer in info["layers"] if layer["name"] == "block1_conv1")
    assert [w["shape"] for w in conv["weights"]] == [(3, 3, 3, 64), (64,)]
    assert not info["cutune_model"]


def test_inspect_damaged_file_raises():
    with pytest.raises(cutune.Error, match="bad_not_hdf5.h5"):
        cutune.inspect(os.path.join(FIXTURES, "bad_not_hdf5.h5"))


def test_advise_without_weights(data, capsys):
    a = cutune.advise(data["train"], weights="none", device="cpu", input_size=32, verbose=1)
    assert not a.probed and a.counts == [8, 8] and a.class_names == ["a", "b"]
    assert a.command.startswith("cutune train") and a.strategy in ("head", "deep")
    assert a.report in capsys.readouterr().out
    with pytest.raises(cutune.InvalidArgument, match="--cv: expected a whole number"):
        cutune.advise(data["train"], weights="none", cv=1)


def test_devices_say_why_none():
    found = cutune.devices()
    if found:
        assert all(d["total_memory"] > 0 for d in found)
    else:
        assert found.reason
