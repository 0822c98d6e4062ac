"""Fixtures of the Python package's tests: a small two-class image tree written with Pillow,
and the cutune command of the same build (CUTUNE_CLI) to compare against. ctest runs these with
CUTUNE_LIBRARY pointing at the build's libcutune.so and python/ on PYTHONPATH."""
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image


def write_tree(root, per_class=8, size=40, seed=0):
    """Class folders a/ and b/: noisy images, class b brighter, so a head learns them."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(("a", "b")):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            pixels = (rng.random((size, size, 3)) * 80 + 120 * k).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, name, f"{i:02d}.png"))
    return root


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    return {"train": write_tree(str(base / "train"), seed=1),
            "val": write_tree(str(base / "val"), per_class=4, seed=2)}


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("CUTUNE_CLI") or shutil.which("cutune")
    if path is None:
        pytest.skip("no cutune command (set CUTUNE_CLI)")
    return path


def run_cli(cli, *args):
    return subprocess.run([cli, *args], capture_output=True, text=True, check=False)


# A quick run: no weights to fetch, the backbone frozen, 32x32 on the CPU.
QUICK = dict(weights="none", input_size=32, batch_size=4, device="cpu", strategy="head",
             head="gap,dense:2:softmax", seed=3)


def quick_cli_flags(**extra):
    flags = dict(QUICK, **extra)
    out = []
    for k, v in flags.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out
