#!/usr/bin/env python3
"""Independent PyTorch golden reference for cutune's VGG fine-tuning engine.

This script re-derives, without using any of cutune's C code, everything the
engine computes for one training step of three fine-tuning models:

  * "iceberg": 48x48x3 input + 1 aux scalar per image, global-max-pool head with
    two dropout layers and a sigmoid / binary cross-entropy loss;
  * "mri":     80x80x3 input, flatten head, softmax / categorical cross-entropy;
  * "mri_vgg19": the same head on VGG19 (16 convolutions) at 40x40x3.

Parameters, inputs and dropout masks are not random draws from torch: they are
produced from cutune's counter-based RNG (Philox4x32-10, Random123), which is
re-implemented here in vectorized NumPy and checked against the published
known-answer vectors at start-up.  The model is then run in float32 PyTorch
(CPU, NCHW), the loss is back-propagated with autograd, and samples of every
activation, activation gradient, parameter and parameter gradient are written
in cutune's memory layout (activations NHWC, conv kernels KRSC, dense kernels
(in, out)) to

    tests/fixtures/golden_iceberg_48.txt
    tests/fixtures/golden_mri_80.txt
    tests/fixtures/golden_vgg19_mri_40.txt

The C test tests/test_golden.c compares the engine against these fixtures.

Run from the repository root (deterministic; re-running regenerates identical
files):

    python3 tests/reference/vgg16_golden.py [CONFIG ...]   (iceberg, mri, mri_vgg19)

Fixture format: first line is a '#' comment describing the generator; every
other line is one array:

    <name> <size> <stride> <count> v0 v1 ... v_{count-1}

where v_k is the element at flat index k*stride (printed with '%.9g') and
count = ceil(size / stride).  stride = 1 when size <= 400, otherwise
ceil(size / 400), incremented by one when even so that the sample does not
alias with power-of-two channel counts.
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Philox4x32-10 (Random123), vectorized over the counter's first word.
# ---------------------------------------------------------------------------

M32 = np.uint64(0xFFFFFFFF)
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 block function. All arguments are broadcastable arrays of
    32-bit values (held as uint64); returns the four 32-bit output words."""
    c = [np.asarray(v, dtype=np.uint64) & M32 for v in (c0, c1, c2, c3)]
    k0 = np.asarray(k0, dtype=np.uint64) & M32
    k1 = np.asarray(k1, dtype=np.uint64) & M32
    c0, c1, c2, c3 = np.broadcast_arrays(*c)
    for _ in range(10):
        p0 = PHILOX_M0 * c0          # < 2^64: exact in uint64
        p1 = PHILOX_M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & M32
        hi1, lo1 = p1 >> np.uint64(32), p1 & M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + PHILOX_W0) & M32
        k1 = (k1 + PHILOX_W1) & M32
    return c0, c1, c2, c3


def check_philox_kat():
    """Published Random123 known-answer tests for philox4x32_10."""
    kats = [
        ((0, 0, 0, 0), (0, 0),
         (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF),
         (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
         (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, want in kats:
        got = tuple(int(w) for w in philox4x32_10(*ctr, *key))
        assert got == want, "Philox KAT failed: %s != %s" % (
            [hex(g) for g in got], [hex(w) for w in want])


def rng_words(seed, purpose_word, outer, inner, n):
    """rng_word(seed, purpose_word, outer, inner, draw) for draw = 0..n-1.

    counter = (draw >> 2, inner, outer, purpose_word),
    key     = (seed & 0xffffffff, seed >> 32),
    result  = output word number (draw & 3).
    """
    nblocks = (n + 3) // 4
    blk = np.arange(nblocks, dtype=np.uint64)
    out = philox4x32_10(blk, inner, outer, purpose_word,
                        seed & 0xFFFFFFFF, seed >> 32)
    # Interleave so that draw 4*b + w is word w of block b.
    return np.stack(out, axis=1).reshape(-1)[:n]


def unit(words):
    """(word >> 8) * 2^-24 as float64 (exactly representable, in [0, 1))."""
    return (words >> np.uint64(8)).astype(np.float64) * 2.0 ** -24


# ---------------------------------------------------------------------------
# Deterministic parameters, inputs and dropout masks.
# ---------------------------------------------------------------------------

SEED = 1234
PURPOSE_INIT = 15 << 16        # 0x000F0000: parameters and test inputs
PURPOSE_DROPOUT = 2 << 16      # (2 << 16) | layer_index
TRAIN_STEP = 7
# Image amplitude fixed by the test contract.  NOTE: with 50 the iceberg logits
# are +45.9 / -175.1, so its float32 loss gradient is exactly 0 everywhere (the
# fixture then only checks the forward pass); amplitude 1.0 would give logits
# 0.886 / -3.43 and a non-degenerate backward pass.
INPUT_SCALE = 1.0


def init_kernel(layer, size, fan_in):
    u = unit(rng_words(SEED, PURPOSE_INIT, layer, 0, size))
    return ((2.0 * u - 1.0) * math.sqrt(6.0 / fan_in)).astype(np.float32)


def init_bias(layer, size):
    u = unit(rng_words(SEED, PURPOSE_INIT, layer, 1, size))
    return ((2.0 * u - 1.0) * 0.05).astype(np.float32)


def make_input(n, h, w, c):
    """NHWC float32 image batch in [-INPUT_SCALE, INPUT_SCALE)."""
    size = n * h * w * c
    u = unit(rng_words(SEED, PURPOSE_INIT, 1000, 0, size))
    return ((2.0 * u - 1.0) * INPUT_SCALE).astype(np.float32).reshape(n, h, w, c)


def make_aux(n):
    u = unit(rng_words(SEED, PURPOSE_INIT, 1001, 0, n))
    return (2.0 * u - 1.0).astype(np.float32).reshape(n, 1)


def dropout_mask(layer, rows, features, rate):
    """Mask already multiplied by the inverted-dropout scale (float32)."""
    scale = np.float32(1) / (np.float32(1) - np.float32(rate))
    mask = np.zeros((rows, features), dtype=np.float32)
    for r in range(rows):
        u = unit(rng_words(SEED, PURPOSE_DROPOUT | layer, TRAIN_STEP, r,
                           features))
        mask[r] = np.where(u >= rate, scale, np.float32(0))
    return mask


# ---------------------------------------------------------------------------
# Model description.
# ---------------------------------------------------------------------------

def vgg_backbone(convs_per_block):
    """(name, op, filters) per layer, in Keras's order for VGG16 (2, 2, 3, 3, 3 convolutions per
    block) or VGG19 (2, 2, 4, 4, 4)."""
    layers = []
    filters = [64, 128, 256, 512, 512]
    for b, nconv in enumerate(convs_per_block, start=1):
        for i in range(1, nconv + 1):
            layers.append(("block%d_conv%d" % (b, i), "conv", filters[b - 1]))
        layers.append(("block%d_pool" % b, "pool", None))
    return layers


BACKBONES = {"vgg16": vgg_backbone([2, 2, 3, 3, 3]), "vgg19": vgg_backbone([2, 2, 4, 4, 4])}
assert len(BACKBONES["vgg16"]) == 18 and len(BACKBONES["vgg19"]) == 21

CONFIGS = {
    "iceberg": dict(
        fixture="golden_iceberg_48.txt", hw=48, batch=2, aux=True,
        # (index, name, op, arg)
        head=[(18, "global_max_pooling2d", "gmp", None),
              (19, "dense", "dense_aux", 1),
              (20, "concatenate", "concat", None),
              (21, "fc2", "dense_relu", 512),
              (22, "dropout", "dropout", 0.3),
              (23, "fc3", "dense_relu", 512),
              (24, "dropout_1", "dropout", 0.3),
              (25, "dense_1", "dense", 1)],
        loss="sigmoid_bce", labels=[[1.0], [0.0]],
        desc="iceberg: input 2x48x48x3 + aux 2x1; head gmp | dense(aux) -> "
             "concat -> fc2(512,relu) -> dropout(0.3) -> fc3(512,relu) -> "
             "dropout_1(0.3) -> dense_1(1); sigmoid BCE mean; labels [1,0]"),
    "mri": dict(
        fixture="golden_mri_80.txt", hw=80, batch=2, aux=False,
        head=[(18, "flatten", "flatten", None),
              (19, "dense", "dense_relu", 64),
              (20, "dense_1", "dense", 2)],
        loss="softmax_ce", labels=[[0.0, 1.0], [1.0, 0.0]],
        desc="mri: input 2x80x80x3; head flatten(NHWC) -> dense(64,relu) -> "
             "dense_1(2); softmax CE mean; labels [[0,1],[1,0]]"),
    # VGG19 (16 convolutions, layers 0..20) at 40x40 under the seed MRI head: block5_pool is
    # 1x1x512, so the head's indices start at 21.
    "mri_vgg19": dict(
        fixture="golden_vgg19_mri_40.txt", hw=40, batch=2, aux=False, backbone="vgg19",
        head=[(21, "flatten", "flatten", None),
              (22, "dense", "dense_relu", 64),
              (23, "dense_1", "dense", 2)],
        loss="softmax_ce", labels=[[0.0, 1.0], [1.0, 0.0]],
        desc="mri_vgg19: VGG19, input 2x40x40x3; head flatten(NHWC) -> dense(64,relu) -> "
             "dense_1(2); softmax CE mean; labels [[0,1],[1,0]]"),
}


class Params:
    """Parameters as torch leaves (torch layout) plus cutune-layout copies."""

    def __init__(self):
        self.torch = {}       # name -> (weight, bias) torch tensors, grads on
        self.cutune = {}      # name -> (kernel, bias) numpy, cutune layout
        self.order = []

    def conv(self, index, name, cin, k):
        kern = init_kernel(index, k * 3 * 3 * cin, 9 * cin).reshape(k, 3, 3, cin)
        bias = init_bias(index, k)
        w = _tensor(kern.copy()).permute(0, 3, 1, 2).contiguous()
        self._add(name, w, bias, kern)

    def dense(self, index, name, fin, fout):
        kern = init_kernel(index, fin * fout, fin).reshape(fin, fout)
        bias = init_bias(index, fout)
        w = _tensor(kern.copy()).t().contiguous()
        self._add(name, w, bias, kern)

    def _add(self, name, w, bias, kern):
        w.requires_grad_(True)
        b = _tensor(bias.copy()).requires_grad_(True)
        self.torch[name] = (w, b)
        self.cutune[name] = (kern, bias)
        self.order.append(name)

    def grads_cutune(self, name):
        w, b = self.torch[name]
        g = w.grad
        if g.dim() == 4:
            g = g.permute(0, 2, 3, 1)      # OIHW -> KRSC
        else:
            g = g.t()                      # (out, in) -> (in, out)
        return g.contiguous().numpy(), b.grad.numpy()


# The precision the model runs in: float32 for the engine's own arithmetic, float64 for the
# reference values the C test compares against (see main()).
DTYPE = [torch.float32]


def _tensor(a):
    """A numpy array as a torch tensor in the current run's precision."""
    return torch.from_numpy(a).to(DTYPE[0])


def to_cutune_layout(t):
    """Activation tensor (or its grad) -> numpy in cutune layout."""
    t = t.detach()
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)          # NCHW -> NHWC
    return t.contiguous().numpy()


def run_config(cfg):
    """Build the model, run forward + backward, return (arrays, summary)."""
    n, hw = cfg["batch"], cfg["hw"]
    x_nhwc = make_input(n, hw, hw, 3)
    aux = make_aux(n) if cfg["aux"] else None
    params = Params()

    acts = []                              # (name, tensor) in layer order

    def record(name, t):
        t.retain_grad()
        acts.append((name, t))
        return t

    # Backbone.
    h = _tensor(x_nhwc.copy()).permute(0, 3, 1, 2).contiguous()
    cin = 3
    for index, (name, op, filters) in enumerate(BACKBONES[cfg.get("backbone", "vgg16")]):
        if op == "conv":
            params.conv(index, name, cin, filters)
            w, b = params.torch[name]
            h = F.relu(F.conv2d(h, w, b, stride=1, padding=1))
            cin = filters
        else:
            h = F.max_pool2d(h, kernel_size=2, stride=2)   # floor on odd sizes
        h = record(name, h)
    backbone_out = h

    # Head.
    for index, name, op, arg in cfg["head"]:
        if op == "gmp":
            h = record(name, torch.amax(h, dim=(2, 3)))
            gmp_out = h
        elif op == "flatten":
            # Keras/cutune flatten NHWC memory order: (H, W, C).
            h = record(name, h.permute(0, 2, 3, 1).reshape(n, -1))
        elif op == "dense_aux":
            params.dense(index, name, 1, arg)
            w, b = params.torch[name]
            dense_aux_out = record(name, F.linear(_tensor(aux.copy()),
                                                  w, b))
        elif op == "concat":
            h = record(name, torch.cat([gmp_out, dense_aux_out], dim=1))
        elif op in ("dense", "dense_relu"):
            params.dense(index, name, h.shape[1], arg)
            w, b = params.torch[name]
            h = F.linear(h, w, b)
            if op == "dense_relu":
                h = F.relu(h)
            h = record(name, h)
        elif op == "dropout":
            mask = dropout_mask(index, n, h.shape[1], arg)
            h = record(name, h * _tensor(mask))
        else:
            raise ValueError(op)
    logits = h

    labels = torch.tensor(cfg["labels"], dtype=DTYPE[0])
    if cfg["loss"] == "sigmoid_bce":
        loss = F.binary_cross_entropy_with_logits(logits, labels,
                                                  reduction="mean")
        probs = torch.sigmoid(logits)
    else:
        loss = F.cross_entropy(logits, labels, reduction="mean")  # soft targets
        probs = torch.softmax(logits, dim=1)
    loss.backward()

    arrays = [("loss", loss.detach().reshape(1).numpy()),
              ("logits", to_cutune_layout(logits)),
              ("probs", to_cutune_layout(probs)),
              ("input", x_nhwc)]
    if aux is not None:
        arrays.append(("aux", aux))
    for name in params.order:
        kern, bias = params.cutune[name]
        arrays.append(("param/%s/kernel" % name, kern))
        arrays.append(("param/%s/bias" % name, bias))
    for name, t in acts:
        arrays.append(("act/" + name, to_cutune_layout(t)))
        if t.grad is not None:
            arrays.append(("dact/" + name, to_cutune_layout(t.grad)))
    for name in params.order:
        gk, gb = params.grads_cutune(name)
        arrays.append(("grad/%s/kernel" % name, gk))
        arrays.append(("grad/%s/bias" % name, gb))

    summary = dict(loss=float(loss.detach()), logits=logits.detach().numpy().copy(),
                   probs=probs.detach().numpy().copy(),
                   backbone_shape=tuple(backbone_out.shape))
    return arrays, summary


# ---------------------------------------------------------------------------
# Fixture writing.
# ---------------------------------------------------------------------------

TARGET_COUNT = 400


def sample_stride(size):
    if size <= TARGET_COUNT:
        return 1
    stride = -(-size // TARGET_COUNT)
    if stride > 1 and stride % 2 == 0:
        stride += 1
    return stride


def format_array(name, arr):
    flat = np.ascontiguousarray(arr, dtype=np.float64).reshape(-1)
    size = flat.size
    stride = sample_stride(size)
    vals = flat[::stride]
    assert vals.size == -(-size // stride)
    return "%s %d %d %d %s" % (name, size, stride, vals.size,
                               " ".join("%.9g" % v for v in vals))


def write_fixture(path, cfg, arrays):
    header = ("# cutune golden reference: tests/reference/vgg16_golden.py, "
              "torch %s (CPU float64 reference values; err32/<name> is torch float32's "
              "own relative error against them; NCHW internally, written in cutune "
              "layout NHWC/KRSC/(in,out)), numpy %s; Philox4x32-10 seed %d, init "
              "purpose 0x%08X, dropout step %d; %s; "
              "line format: <name> <size> <stride> <count> values..."
              % (torch.__version__, np.__version__, SEED, PURPOSE_INIT,
                 TRAIN_STEP, cfg["desc"]))
    lines = [header] + [format_array(name, arr) for name, arr in arrays]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)                   # unused: nothing is drawn by torch
    torch.set_default_dtype(torch.float32)
    check_philox_kat()

    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    outdir = os.path.join(repo, "tests", "fixtures")
    os.makedirs(outdir, exist_ok=True)

    # Which fixtures to write: all, or those named on the command line (e.g. mri_vgg19), so
    # that adding one does not rewrite the others.
    keys = sys.argv[1:] or list(CONFIGS)
    for key in keys:
        cfg = CONFIGS[key]
        # The reference values come from a float64 run. A float32 run of the same model says how
        # far an exact float32 implementation may stray from them: the C test allows each array
        # a multiple of that (ill-conditioned arrays, such as gradients routed through near-tied
        # max-pool windows, get a wider bound than well-conditioned ones).
        DTYPE[0] = torch.float32
        arrays32, _ = run_config(cfg)
        DTYPE[0] = torch.float64
        arrays, s = run_config(cfg)
        DTYPE[0] = torch.float32
        errs = []
        for (name, a32), (_, a64) in zip(arrays32, arrays):
            a32 = np.asarray(a32, np.float64).ravel()
            a64 = np.asarray(a64, np.float64).ravel()
            den = np.linalg.norm(a64)
            err = np.linalg.norm(a32 - a64) / den if den > 0 else 0.0
            errs.append(("err32/" + name, np.array([err])))
        path = os.path.join(outdir, cfg["fixture"])
        write_fixture(path, cfg, arrays + errs)
        np.set_printoptions(precision=9)
        worst = max(errs, key=lambda e: e[1][0])
        print("%-8s loss %.9g  logits %s  probs %s  (%d arrays, %d bytes -> %s); "
              "worst float32 error %.3g (%s)"
              % (key, s["loss"], s["logits"].tolist(), s["probs"].tolist(),
                 len(arrays), os.path.getsize(path),
                 os.path.relpath(path, repo), worst[1][0], worst[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
