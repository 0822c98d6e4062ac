#!/usr/bin/env python3
"""Modelled (not measured) scaling efficiency of synchronous data-parallel training on 2-16 GPUs.

What it computes: for VGG16 (no top) with the `mri` head at 224x224, batch 64 per GPU (weak
scaling), the step time of one GPU when its float32 gradients are all-reduced across n GPUs,
and the efficiency = single-GPU step / modelled step. From what: the per-layer forward and
backward milliseconds of one measured H100 step (bench/RESULTS.md, "### Against the ceilings",
the bf16 and TF32 tables, parsed at run time), VGG16's parameter counts, the head spec
(CT_HEAD_MRI in include/cutune/model.h), and the ring all-reduce cost
    t(bytes) = 2(n-1) alpha + 2(n-1)/n * bytes / bus_bandwidth
with the link constants in LINKS. The step is simulated: forward, then backward layer by layer
from the top; the gradient arena (backward order) is cut into buckets of whole tensors as
PyTorch DDP does (1 MiB first bucket, then 25 MiB; a bucket closes once it reaches its cap); a
bucket is ready when the lowest layer it holds has finished backward; buckets are all-reduced
one after another on one stream; the step ends at max(end of backward, end of the last
all-reduce) plus the measured time outside the layers (loss, update). The no-overlap figure
all-reduces the same buckets after backward.

    python3 bench/scaling_model.py [--results bench/RESULTS.md] [--head SPEC]
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 64
MIB = 1 << 20
FIRST_BUCKET, BUCKET = 1 * MIB, 25 * MIB  # torch DDP: _DEFAULT_FIRST_BUCKET_BYTES, bucket_cap_mb
GRAD_BYTES = 4  # float32 gradients in every precision
DEFAULT_HEAD = "flatten,dense:64:relu,dense:2:softmax"

# name, GPUs per node, nodes, bus bandwidth GB/s (the slowest link of the ring), alpha us per step
LINKS = [
    ("NVLink 4 (H100 SXM, NVSwitch)", 8, 1, 360.0, 10.0),
    ("PCIe Gen4 x16", 8, 1, 22.0, 10.0),
    ("PCIe Gen5 x16", 8, 1, 45.0, 10.0),
    ("2 nodes x 8, 100 GbE", 8, 2, 10.0, 25.0),
    ("2 nodes x 8, InfiniBand NDR 400 Gb/s", 8, 2, 45.0, 15.0),
]
LINK_NOTES = [
    "NCCL all-reduce bus bandwidth typical of nccl-tests on 8 x H100 SXM",
    "GPUs under PCIe switches, no NVLink (A100 PCIe / L40S-class servers)",
    "twice Gen4's link rate (H100 PCIe servers without NVLink bridges)",
    "one 100 GbE NIC per node, ~10 GB/s effective (RoCE/TCP): the ring's bottleneck",
    "one 400 Gb/s NDR HCA per node, ~45 GB/s effective: the ring's bottleneck",
]
GPU_COUNTS = (2, 4, 8)

VGG16 = [  # (layer, in channels, out channels) of the 3x3 convolutions
    ("block1_conv1", 3, 64), ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128), ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256), ("block3_conv2", 256, 256), ("block3_conv3", 256, 256),
    ("block4_conv1", 256, 512), ("block4_conv2", 512, 512), ("block4_conv3", 512, 512),
    ("block5_conv1", 512, 512), ("block5_conv2", 512, 512), ("block5_conv3", 512, 512),
]


# ---- inputs -------------------------------------------------------------------------------

def section(text, title):
    start = text.find(title)
    if start < 0:
        sys.exit(f"scaling_model.py: no section '{title}' in the results file")
    end = text.find("\n### ", start + len(title))
    return text[start:] if end < 0 else text[start:end]


def profile_tables(sec):
    """Yields (preceding text, rows) for each `| layer | forward ms | backward ms |` table."""
    lines, i = sec.split("\n"), 0
    while i < len(lines):
        if lines[i].startswith("| layer | forward ms | backward ms"):
            j, rows = i + 2, []
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip() for c in lines[j].strip().strip("|").split("|")])
                j += 1
            yield "\n".join(lines[max(0, i - 12):i]), rows
            i = j
        else:
            i += 1


def parse_profile(before, rows):
    layers = [(r[0], float(r[1]), float(r[2])) for r in rows if r[0] != "(layers)"]
    total = sum(f + b for _, f, b in layers)
    m = re.findall(r"median step (?:was )?([\d.]+) ms", before)
    o = re.findall(r"([\d.]+) ms (?:were )?outside the layers", before)
    if not m:
        sys.exit("scaling_model.py: a profile table lacks its 'median step ... ms' line")
    outside = float(o[-1]) if o else float(m[-1]) - total
    return {"layers": layers, "median": float(m[-1]), "outside": outside}


def read_profiles(path):
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        sys.exit(f"scaling_model.py: cannot read {path}: {e.strerror}")
    found = {}
    for before, rows in profile_tables(section(text, "### Against the ceilings")):
        prec = "bf16" if "bf16" in before.split("\n\n")[-1] else "TF32"
        found.setdefault(prec, parse_profile(before, rows))
    missing = [p for p in ("bf16", "TF32") if p not in found]
    if missing:
        sys.exit(f"scaling_model.py: no {' or '.join(missing)} per-layer profile table "
                 f"(| layer | forward ms | backward ms | ...) under '### Against the ceilings' "
                 f"in {path}")
    return found


def head_spec(override):
    if override:
        return override
    try:
        text = open(os.path.join(ROOT, "include/cutune/model.h"), encoding="utf-8").read()
        return re.search(r'#define CT_HEAD_MRI "([^"]+)"', text).group(1)
    except (OSError, AttributeError):
        return DEFAULT_HEAD


# ---- parameters and buckets ---------------------------------------------------------------

def param_tensors(spec, size=224):
    """{layer: [(tensor, count), ...]} for VGG16 (no top) and the head's dense layers."""
    tensors = {n: [("kernel", 9 * i * o), ("bias", o)] for n, i, o in VGG16}
    width, k = (size // 32) ** 2 * 512, 0
    for tok in spec.split(","):
        parts = tok.split("@")[0].split(":")
        if parts[0] == "dense":
            units = int(parts[1])
            name = "dense" if k == 0 else f"dense_{k}"
            tensors[name] = [("kernel", width * units), ("bias", units)]
            width, k = units, k + 1
    return tensors


def arena(layers, tensors, lowest):
    """Gradient tensors in backward order (last layer first; bias before kernel, as DDP's
    reversed parameter list), down to the lowest trainable layer."""
    out = []
    for name in reversed(layers[lowest:]):
        for t, count in reversed(tensors.get(name, [])):
            out.append((name, t, count * GRAD_BYTES))
    return out


def buckets(tensors):
    """DDP's rule: add whole tensors until the bucket reaches its cap (1 MiB first, then 25)."""
    out, cur, size = [], [], 0
    for t in tensors:
        cur.append(t)
        size += t[2]
        if size >= (FIRST_BUCKET if not out else BUCKET):
            out.append((cur, size))
            cur, size = [], 0
    if cur:
        out.append((cur, size))
    return out


# ---- the step -----------------------------------------------------------------------------

def allreduce_ms(nbytes, gpus, bw_gbs, alpha_us):
    return (2 * (gpus - 1) * alpha_us * 1e-3
            + 2 * (gpus - 1) / gpus * nbytes / (bw_gbs * 1e9) * 1e3)


def backward_finish(prof, lowest):
    """Forward time and {layer: time its backward ends}, backward stopping at `lowest`."""
    names = [n for n, _, _ in prof["layers"]]
    t = fwd = sum(f for _, f, _ in prof["layers"])
    done = {}
    for name, _, b in reversed(prof["layers"][lowest:]):
        t += b
        done[name] = t
    return fwd, done, t, names


def simulate(prof, bks, lowest, gpus, bw, alpha):
    """(single-GPU step, overlapped step, no-overlap step, total all-reduce ms) in ms."""
    _, done, bwd_end, _ = backward_finish(prof, lowest)
    single = bwd_end + prof["outside"]
    if gpus == 1:
        return single, single, single, 0.0
    end = comm = 0.0
    for tensors, size in bks:
        ready = done[tensors[-1][0]]
        t = allreduce_ms(size, gpus, bw, alpha)
        end, comm = max(ready, end) + t, comm + t
    return single, max(bwd_end, end) + prof["outside"], bwd_end + comm + prof["outside"], comm


SETUPS = [("full fine-tuning (all 21 layers)", "block1_conv1"),
          ("top: block5 + head trainable", "block5_conv1")]


def setup_buckets(prof, tensors, first):
    names = [n for n, _, _ in prof["layers"]]
    if first not in names:
        sys.exit(f"scaling_model.py: the profile has no layer {first}")
    lowest = names.index(first)
    return lowest, buckets(arena(names, tensors, lowest))


# ---- output -------------------------------------------------------------------------------

def assumptions_table():
    print("| interconnect | GPUs | bus bandwidth (GB/s) | alpha per ring step (us) | "
          "latency term at the largest n | note |")
    print("|---|---|---|---|---|---|")
    for (name, per, nodes, bw, alpha), note in zip(LINKS, LINK_NOTES):
        n = per * nodes
        gpus = "16 (2 x 8)" if nodes > 1 else "2, 4, 8"
        print(f"| {name} | {gpus} | {bw:g} | {alpha:g} | 2({n}-1) x {alpha:g} us = "
              f"{2 * (n - 1) * alpha / 1000:.2f} ms | {note} |")
    print()


def bucket_table(title, dones, bks):
    total = sum(s for _, s in bks)
    print(f"{title}: {total:,} bytes of float32 gradients ({total / MIB:.2f} MiB, "
          f"{total // GRAD_BYTES:,} parameters) in {len(bks)} buckets")
    print()
    print("| bucket | layers (backward order) | MiB | ready at (ms into the step, bf16 / TF32) |")
    print("|---|---|---|---|")
    for i, (ts, size) in enumerate(bks):
        layers = list(dict.fromkeys(n for n, _, _ in ts))
        span = layers[0] if len(layers) == 1 else f"{layers[0]} .. {layers[-1]}"
        ready = " / ".join(f"{d[ts[-1][0]]:.2f}" for d in dones)
        print(f"| {i + 1} | {span} ({len(layers)}) | {size / MIB:.2f} | {ready} |")
    print()


def efficiency_table(prec, prof, setup, lowest, bks):
    fwd, _, bwd_end, _ = backward_finish(prof, lowest)
    single = bwd_end + prof["outside"]
    print(f"**{prec}, {setup}**: single-GPU step {single:.2f} ms (forward {fwd:.2f}, backward "
          f"{bwd_end - fwd:.2f}, outside the layers {prof['outside']:.2f}). Cells: efficiency "
          f"with overlap (without overlap); modelled step ms.")
    print()
    print("| interconnect | 2 GPUs | 4 GPUs | 8 GPUs | 16 GPUs (2 x 8) |")
    print("|---|---|---|---|---|")
    results = {}
    for name, per, nodes, bw, alpha in LINKS:
        counts = [per * nodes] if nodes > 1 else list(GPU_COUNTS)
        cells = []
        for n in (2, 4, 8, 16):
            if n not in counts:
                cells.append("-")
                continue
            s, ov, no, _ = simulate(prof, bks, lowest, n, bw, alpha)
            results[(name, n)] = s / ov
            cells.append(f"{100 * s / ov:.1f}% ({100 * s / no:.1f}%); {ov:.2f} ms")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    return results


def targets(res):
    print("Targets (8 GPUs, full fine-tuning, batch 64 per GPU): >= 90% on NVLink, "
          ">= 85% on PCIe Gen5.")
    print()
    for prec in ("bf16", "TF32"):
        for link, goal in ((LINKS[0][0], 0.90), (LINKS[2][0], 0.85)):
            e = res[(prec, 0)][(link, 8)]
            verdict = "met" if e >= goal else "NOT met"
            print(f"- {prec}, {link}: {100 * e:.1f}% against {100 * goal:.0f}%: {verdict}")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    ap.add_argument("--head", help="head spec (default: CT_HEAD_MRI from include/cutune/model.h)")
    args = ap.parse_args()
    profiles = read_profiles(args.results)
    spec = head_spec(args.head)
    tensors = param_tensors(spec)
    print(f"Head: {spec}. Batch {BATCH} per GPU, 224x224, float32 gradients; buckets of "
          f"{FIRST_BUCKET // MIB} MiB then {BUCKET // MIB} MiB (DDP's rule).")
    print()
    assumptions_table()
    res = {}
    for k, (setup, first) in enumerate(SETUPS):
        lowest, bks = setup_buckets(profiles["bf16"], tensors, first)
        dones = [backward_finish(profiles[p], lowest)[1] for p in ("bf16", "TF32")]
        bucket_table(setup, dones, bks)
        for prec in ("bf16", "TF32"):
            res[(prec, k)] = efficiency_table(prec, profiles[prec], setup, lowest, bks)
    targets(res)


if __name__ == "__main__":
    main()
