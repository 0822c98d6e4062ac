#!/usr/bin/env python3
"""cutune's CPU backend against PyTorch's CPU path, side by side, quiet and under load.

For each input size (default 64x64 at batch 8 and 224x224 at batch 2) it times, with the same
number of threads in both: inference (forward with training off), a full training step (forward,
loss, backward, SGD update with momentum 0.9; every layer trainable) and a frozen one (the
backbone frozen, only the head trained: PyTorch runs the backbone under no_grad, as cutune skips
its backward). Both run VGG16 with cutune's `mri` head (flatten, dense 64 relu, dense 2 softmax)
on a fixed random NHWC batch; PyTorch's VGG16 is written out here (torchvision's layers, no
weights needed), channels_last, so that both convolve channels-last tensors through oneDNN.

cutune runs as bench/bench_cpu_vgg16 (one process per size and round: its inference and
training rows) with OMP_WAIT_POLICY=PASSIVE, as the cutune command sets it, unless the
environment says otherwise; PyTorch runs in this process with its defaults. The two alternate, size by size, for --rounds
rounds, so that a change in the machine's load falls on both; each round gives each row a median
over --reps timed runs after one warm-up, and the table shows the median over rounds of those,
and their ratio: PyTorch's time over cutune's (above 1: cutune is faster).

Conditions: "quiet" runs as the machine is (the table prints the load average, since a shared
machine is rarely idle); "loaded" first starts --load busy loops (`sh -c 'while :; do :; done'`)
that compete for the cores, and stops them at the end.

    python3 bench/cpu_vs_pytorch.py --bench build/bench/bench_cpu_vgg16
    python3 bench/cpu_vs_pytorch.py --bench ... --sizes 64:8 --rounds 2 --conditions loaded
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
MODES = ("inference", "full", "frozen")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Vgg16Mri(nn.Module):
    """VGG16's convolutional base (3x3 'same' convolutions + ReLU, 2x2 max pools) and cutune's
    mri head."""

    def __init__(self, size):
        super().__init__()
        layers, c = [], 3
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        side = size // 32
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(512 * side * side, 64), nn.ReLU(),
                                  nn.Linear(64, 2))
        self.frozen = False

    def forward(self, x):
        if self.frozen:
            with torch.no_grad():
                x = self.features(x)
        else:
            x = self.features(x)
        return self.head(x)


def torch_times(size, batch, reps):
    """PyTorch's median milliseconds per mode for one size."""
    torch.manual_seed(1)
    model = Vgg16Mri(size).to(memory_format=torch.channels_last)
    x = (torch.rand(batch, size, size, 3) * 120 - 60).permute(0, 3, 1, 2)  # NHWC memory
    y = torch.randint(0, 2, (batch,))
    loss_fn = nn.CrossEntropyLoss()
    out = {}
    for mode in MODES:
        model.frozen = mode == "frozen"
        for p in model.features.parameters():
            p.requires_grad_(mode == "full")
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

        def step():
            if mode == "inference":
                model.eval()
                with torch.no_grad():
                    model(x)
                return
            model.train()
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        times = []
        for i in range(1 + reps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        out[mode] = statistics.median(times[1:]) * 1e3
    return out


def cutune_times(bench, size, batch, reps, threads):
    """cutune's median milliseconds per mode for one size, from bench_cpu_vgg16's rows."""
    cmd = [bench, "--sizes", str(size), "--batches", str(batch), "--freeze", "none,all",
           "--reps", str(reps), "--threads", str(threads), "--update"]
    # The cutune command waits passively unless told otherwise (src/cli/main.c); so does this.
    env = dict(os.environ)
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    rows = {}
    for line in res.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 4 and cells[0] == str(size) and cells[1] == str(batch):
            rows[(cells[2], cells[3])] = float(cells[4])
    try:
        return {"inference": rows[("none", "fwd")], "full": rows[("none", "fwd+bwd+upd")],
                "frozen": rows[("all", "fwd+bwd+upd")]}
    except KeyError:
        sys.exit(f"cpu_vs_pytorch.py: unexpected output of {' '.join(cmd)}:\n{res.stdout}")


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_condition(args, sizes, condition):
    """Rows (size, batch, mode, cutune ms, pytorch ms) of one condition, medians over rounds."""
    loops = []
    if condition == "loaded":
        loops = [subprocess.Popen(["sh", "-c", "while :; do :; done"])
                 for _ in range(args.load)]
        time.sleep(1.0)
    la = load_average()
    got = {}  # (size, batch, mode) -> ([cutune ms], [pytorch ms])
    try:
        for r in range(args.rounds):
            for size, batch in sizes:
                c = cutune_times(args.bench, size, batch, args.reps, args.threads)
                t = torch_times(size, batch, args.reps)
                for mode in MODES:
                    cell = got.setdefault((size, batch, mode), ([], []))
                    cell[0].append(c[mode])
                    cell[1].append(t[mode])
                    log(f"{condition} round {r + 1}: {size}x{size} batch {batch} {mode}: "
                        f"cutune {c[mode]:.1f} ms, pytorch {t[mode]:.1f} ms")
    finally:
        for p in loops:
            p.kill()
            p.wait()
    rows = [(s, b, m, statistics.median(cs), statistics.median(ts))
            for (s, b, m), (cs, ts) in got.items()]
    return rows, la


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True, help="the bench_cpu_vgg16 program")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="64:8,224:2", help="SIZE:BATCH,... (default 64:8,224:2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2, help="timed runs per row after one warm-up")
    ap.add_argument("--conditions", default="quiet,loaded")
    ap.add_argument("--load", type=int, default=2, help="busy loops of the loaded condition")
    ap.add_argument("--out", help="also append the markdown table to this file")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split(":")) for s in args.sizes.split(",")]
    torch.set_num_threads(args.threads)

    lines = [f"cutune ({os.path.basename(args.bench)}) vs PyTorch {torch.__version__} on the CPU, "
             f"{args.threads} threads each, VGG16 + mri head, median over {args.rounds} "
             f"interleaved rounds of the median of {args.reps} runs; ratio = PyTorch ms / "
             f"cutune ms (above 1: cutune faster)", "",
             "| condition | load avg | size | batch | pass | cutune ms | PyTorch ms | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for condition in args.conditions.split(","):
        rows, la = run_condition(args, sizes, condition)
        label = condition if condition == "quiet" else f"loaded (+{args.load} busy loops)"
        for size, batch, mode, c, t in rows:
            lines.append(f"| {label} | {la:.1f} | {size} | {batch} | {mode} | {c:.1f} | "
                         f"{t:.1f} | {t / c:.2f} |")
    table = "\n".join(lines)
    print("\n" + table, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(table + "\n\n")


if __name__ == "__main__":
    main()
