"""cutune.train as a rank of a data-parallel run: two Python processes under mpirun (CPU ranks,
MPI's all-reduce inside libcutune) train what one process trains, and every rank's History is
the run's log. Skipped where mpirun is not installed."""
import csv
import os
import shutil
import subprocess
import sys
import json
import textwrap

import pytest

import cutune
from conftest import QUICK

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun (openmpi-bin)")

# Each rank writes its History to a file of its own: mpirun interleaves the ranks' stdout.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import cutune
    args = json.loads(sys.argv[1])
    h = cutune.train(**args)
    rank = os.environ.get("OMPI_COMM_WORLD_RANK", "0")
    with open(os.path.join(sys.argv[2], "history" + rank + ".json"), "w") as f:
        json.dump(h.history["loss"], f)
""")


def test_two_ranks_train_as_one(data, tmp_path):
    args = dict(QUICK, data=data["train"], val=data["val"], epochs=2, verbose=0,
                batch_size=8, horizontal_flip=True)
    one = cutune.train(out=str(tmp_path / "one"), **args)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    two = subprocess.run(["mpirun", "--oversubscribe", "-np", "2", sys.executable, "-c", SCRIPT,
                          json.dumps(dict(args, out=str(tmp_path / "two"))), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stdout + two.stderr
    for rank in ("0", "1"):
        with open(tmp_path / f"history{rank}.json") as f:
            losses = json.load(f)
        assert len(losses) == len(one.history["loss"]), (rank, losses)
        for a, b in zip(losses, one.history["loss"]):
            assert abs(a - b) <= 1e-5 * abs(b), (rank, a, b)
    with open(tmp_path / "two" / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
