#!/usr/bin/env python3
"""The configurations of `cutune bench --sweep`, in PyTorch, for a side-by-side table.

VGG16 (torchvision's `vgg16().features`, randomly initialised: the GPU machine has no internet
and the weights do not change the speed) with cutune's heads, trained with SGD (lr 1e-3,
momentum 0.9, Nesterov) on a fixed random batch, for every freeze depth x batch size. Each
configuration runs in its best PyTorch form: AMP bf16 autocast (or TF32 / strict FP32, by
--precision), channels_last, cudnn.benchmark, a fused SGD step, and torch.compile when --compile
is given (it recompiles for every configuration, which costs tens of seconds each). Freezing is
done as a fine-tuner does it: requires_grad=False for the frozen layers, whose forward runs under
torch.no_grad() so that nothing below the lowest trainable layer keeps activations or computes a
gradient - the same work cutune's backward skips.

The table has cutune's columns. A step is timed as cutune times it, synchronised at both ends:
with --input device (the default) the float32 NHWC batch is on the device before the timing and a
step is forward, backward and the optimizer step; with --input host each step first copies the
batch from pageable host memory. img/s is the batch over the median step; TFLOP/s counts the
same FLOPs as ct_model_flops (2 per multiply-add; the forward of every conv and dense layer, the
weight gradient of each trainable one, and the data gradient of each layer whose input comes
from a trainable part); device GiB is
torch.cuda.max_memory_reserved() over the configuration (the caching allocator's peak, which
holds cuDNN's and cuBLAS's workspaces; cutune's column is the device memory the configuration
added, measured with cudaMemGetInfo).

    python3 bench/pytorch_vgg16.py                       # bf16, the default sweep, 224x224
    python3 bench/pytorch_vgg16.py --precision bf16,tf32 --compile --out table.md
    python3 bench/pytorch_vgg16.py --device cpu --input-size 32 --sweep-batch 2 --steps 1
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn
import torchvision

# Where each block of torchvision's vgg16().features ends (after its max pool), as a count of
# modules: the prefix frozen by each of cutune's freeze depths.
FROZEN_MODULES = {"none": 0, "1": 5, "1-2": 10, "1-3": 17, "1-4": 24, "1-5": 31, "all": 31}
# cutune's layer names for the same depths, so that a sweep can name either.
LAYER_DEPTHS = {"block1_pool": "1", "block2_pool": "1-2", "block3_pool": "1-3",
                "block4_pool": "1-4", "block5_pool": "all"}

VGG16_CONVS = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256),
               (256, 256), "M", (256, 512), (512, 512), (512, 512), "M", (512, 512), (512, 512),
               (512, 512), "M"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Net(nn.Module):
    """VGG16 features split at the freeze point, and one of cutune's heads."""

    def __init__(self, head, frozen_modules, size):
        super().__init__()
        features = torchvision.models.vgg16(weights=None).features
        self.frozen = features[:frozen_modules]
        self.trainable = features[frozen_modules:]
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.head_kind = head
        side = size // 32
        if head == "mri":  # flatten, dense:64:relu, dense:2:softmax
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(512 * side * side, 64), nn.ReLU(),
                                      nn.Linear(64, 2))
        elif head == "iceberg":  # gmp, aux:1, concat, fc2 512, dropout .3, fc3 512, dropout .3, 1
            self.aux = nn.Linear(1, 1)
            self.head = nn.Sequential(nn.Linear(513, 512), nn.ReLU(), nn.Dropout(0.3),
                                      nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.3),
                                      nn.Linear(512, 1))
        else:
            raise ValueError(f"head {head!r}: expected mri or iceberg")

    def forward(self, x, aux=None):
        if len(self.frozen):
            with torch.no_grad():
                x = self.frozen(x)
        x = self.trainable(x)
        if self.head_kind == "mri":
            return self.head(x)
        x = torch.amax(x, dim=(2, 3))
        return self.head(torch.cat([x, self.aux(aux)], dim=1))


def head_layers(head, size):
    """The head's dense layers as (fan_in, fan_out, data gradient): "always" when the layer's
    input comes from a trainable layer whatever the freezing, "never" for the auxiliary input,
    "backbone" when it depends on a trainable backbone (mri's first dense reads the flattened
    block5 output)."""
    side = size // 32
    if head == "mri":
        return [(512 * side * side, 64, "backbone"), (64, 2, "always")]
    # iceberg: the aux Dense(1) is trainable and lies below the concatenation, so fc2 and
    # everything after it always pass a data gradient down.
    return [(1, 1, "never"), (513, 512, "always"), (512, 512, "always"), (512, 1, "always")]


def train_flops(head, size, depth):
    """FLOPs per image of one training step, as ct_model_flops counts them."""
    layers = []  # (flops of one pass, trainable, computes a data gradient)
    frozen_convs = {"none": 0, "1": 2, "1-2": 4, "1-3": 7, "1-4": 10, "1-5": 13, "all": 13}[depth]
    h = size
    conv = 0
    for item in VGG16_CONVS:
        if item == "M":
            h //= 2
            continue
        cin, cout = item
        # Conv i passes a gradient to its input when conv i-1 is trainable.
        layers.append((2.0 * 9 * cin * cout * h * h, conv >= frozen_convs, conv > frozen_convs))
        conv += 1
    backbone_trainable = frozen_convs < 13
    for fan_in, fan_out, rule in head_layers(head, size):
        dgrad = rule == "always" or (rule == "backbone" and backbone_trainable)
        layers.append((2.0 * fan_in * fan_out, True, dgrad))
    total = 0.0
    for f, trainable, dgrad in layers:
        total += f + (f if trainable else 0.0) + (f if dgrad else 0.0)
    return total


def set_precision(precision):
    tf32 = precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


# --input in the table's heading, as cutune's sweep says it.
INPUT_WORDS = {"device": "on the device (one batch)",
               "host": "copied from pageable host memory each step"}


def run_config(args, device, precision, depth, batch):
    """Median step time (s) and peak device memory (bytes) of one configuration."""
    set_precision(precision)
    model = Net(args.head, FROZEN_MODULES[depth], args.input_size).to(device)
    model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, nesterov=True,
                              fused=device.type == "cuda")
    except (RuntimeError, TypeError):
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, nesterov=True)
    step_model = model
    if args.compile:
        # Every configuration is a new model of the same class: without a reset, Dynamo's
        # per-function recompile limit (8) would silently send later ones to eager mode.
        torch._dynamo.reset()
        step_model = torch.compile(model, dynamic=False)

    gen = torch.Generator().manual_seed(1)
    # A float32 NHWC host batch, as cutune's bench makes one.
    x_host = (torch.rand(batch, args.input_size, args.input_size, 3, generator=gen) * 120 - 60)
    # NHWC memory viewed as NCHW: channels_last
    x_dev = x_host.to(device).permute(0, 3, 1, 2) if args.input == "device" else None
    aux = torch.rand(batch, 1, generator=gen).to(device)
    if args.head == "mri":
        y = torch.randint(0, 2, (batch,), generator=gen).to(device)
        loss_fn = nn.CrossEntropyLoss()
    else:
        y = torch.randint(0, 2, (batch, 1), generator=gen).float().to(device)
        loss_fn = nn.BCEWithLogitsLoss()
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=precision == "bf16")

    def step():
        x = x_dev if x_dev is not None else x_host.to(device).permute(0, 3, 1, 2)
        with autocast:
            out = step_model(x, aux)
            loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_reserved() if device.type == "cuda" else 0
    return statistics.median(times[args.warmup:]), peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="bf16",
                    help="comma-separated: bf16 (AMP autocast), tf32, fp32 (default bf16)")
    ap.add_argument("--sweep-freeze", default="none,1-2,1-3,1-4,all",
                    help="freeze depths: none, 1, 1-2, 1-3, 1-4, all or blockN_pool")
    ap.add_argument("--sweep-batch", default="32,64,128,256")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--head", default="mri", choices=["mri", "iceberg"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch.compile each configuration")
    ap.add_argument("--input", default="device", choices=["device", "host"],
                    help="the batch on the device before timing (default), or copied from "
                         "pageable host memory each step")
    ap.add_argument("--out", help="also append the markdown table to this file")
    args = ap.parse_args()
    if args.input_size < 32 or args.input_size % 32:
        ap.error("--input-size must be a multiple of 32, at least 32 (the mri head flattens "
                 "size/32 squared positions)")

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("pytorch_vgg16.py: no CUDA device visible to PyTorch")
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = "CPU"
    depths = [LAYER_DEPTHS.get(d, d) for d in args.sweep_freeze.split(",")]
    for d in depths:
        if d not in FROZEN_MODULES:
            ap.error(f"--sweep-freeze: unknown depth {d!r}")
    batches = [int(b) for b in args.sweep_batch.split(",")]
    precisions = args.precision.split(",")
    for p in precisions:
        if p not in ("bf16", "tf32", "fp32"):
            ap.error(f"--precision: {p!r} is not bf16, tf32 or fp32")
    impl = "pytorch+compile" if args.compile else "pytorch"

    rows = []
    for precision in precisions:
        for depth in depths:
            for batch in batches:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                try:
                    med, peak = run_config(args, device, precision, depth, batch)
                except torch.cuda.OutOfMemoryError:
                    log(f"pytorch: {precision} frozen {depth}, batch {batch}: out of memory")
                    rows.append(f"| {impl} | {precision} | {depth} | {batch} | OOM | - | - | - |")
                    continue
                except Exception as e:  # e.g. a torch.compile failure: report it, go on
                    log(f"pytorch: {precision} frozen {depth}, batch {batch}: "
                        f"{type(e).__name__}: {e}")
                    rows.append(f"| {impl} | {precision} | {depth} | {batch} | error | - | - "
                                f"| - |")
                    continue
                ips = batch / med
                tflops = train_flops(args.head, args.input_size, depth) * ips * 1e-12
                mem = f"{peak / 2**30:.2f}" if device.type == "cuda" else "-"
                rows.append(f"| {impl} | {precision} | {depth} | {batch} | {ips:.1f} | "
                            f"{tflops:.{3 if tflops < 10 else 1}f} | {med * 1e3:.1f} | {mem} |")
                log(f"pytorch: {precision} frozen {depth}, batch {batch}: {ips:.1f} img/s")
    title = (f"### bench/pytorch_vgg16.py: {name}, torch {torch.__version__}, torchvision "
             f"{torchvision.__version__}, VGG16 {args.input_size}x{args.input_size}, head "
             f"'{args.head}', {args.steps} timed steps after {args.warmup} warm-up, input "
             f"{INPUT_WORDS[args.input]}"
             f"{', torch.compile' if args.compile else ''}")
    table = "\n".join([title, "",
                       "| impl | precision | frozen | batch | img/s | TFLOP/s | ms/step | "
                       "device GiB |",
                       "|---|---|---|---|---|---|---|---|"] + rows)
    print("\n" + table, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(table + "\n\n")


if __name__ == "__main__":
    main()
