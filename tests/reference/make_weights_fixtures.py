#!/usr/bin/env python3
"""Writes the HDF5 weight fixtures (tests/fixtures/*.h5) that tests/test_weights.c reads, with
h5py alone.

Every layout cutune reads is produced here the way its writer lays it out (see
shared/reference/keras-formats.md and keras/src/legacy/saving/legacy_h5_format.py):

  keras1_notop_fixed.h5   official keras-applications notop layout: layer_names only (no
                          backend, no keras_version), <layer>/<layer>_W_1:0 and _b_1:0,
                          fixed-length NUL-padded strings, empty weight_names as float64 (0,)
  keras1_notop_vlen.h5    the same with variable-length strings
  keras1_vgg19_notop.h5   the official layout of VGG19's notop file (16 convolutions)
  keras1_full.h5          the full file: + flatten, fc1 (25088, 4096), fc2, predictions
  tfkeras2_mri64.h5       tf.keras 2 save_weights of VGG16(64x64) + mri head (flatten, dense,
                          dense_1): names like block1_conv1/kernel:0, backend, keras_version
  tfkeras2_seqhead.h5     tf.keras 2 save_weights of Model(vgg.input, top(vgg.output)) with a
                          Sequential head: one layer 'sequential' holding dense/kernel:0, ...
  keras3_iceberg48.h5     Keras 3 legacy layout of the seed iceberg model at 48x48 (names like
                          block1_conv1/kernel, data at block1_conv1/block1_conv1/kernel,
                          input layers, top_level_model_weights)
  keras3_model_mri64.h5   Keras 3 whole-model .h5: the same under /model_weights
  split_names.h5          notop with layer_names split into layer_names0, layer_names1
  keras3_iceberg48.weights.h5   Keras 3 .weights.h5 with the vars groups' 'name' metadata
  keras3_nonames_mri64.weights.h5  Keras 3 .weights.h5 without names (early Keras 3)
  bad_*.h5                error cases: not HDF5, truncated, not Keras, missing layer, shape,
                          float64 kernel, int kernel, NaN, Inf, extra layer, listed dataset
                          missing, nested weights that cannot be split

Full VGG16 shapes are needed for the real layouts, so every dataset is chunked and
gzip-compressed with a fill value, and only its first chunk (the "corner") is written: the
files stay a few tens of KB. Values come from a formula both sides compute, with every value
exactly representable in float32, so a HWIO/KRSC transposition or a layer mix-up shows:

  L = 1-based position of the layer among the layers with weights, in the file's order
  conv kernel (3, 3, C, K), corner h, w < 3, c < min(C, 8), k < min(K, 8):
        (L*1024 + h*256 + w*64 + c*8 + k) / 1024
  dense kernel (I, O), corner i < min(I, 8), o < min(O, 8):  (L*1024 + i*8 + o) / 1024
  every other kernel element (the fill value): -L / 4
  bias (K):  -(L*64 + k % 64) / 64

Run from the repository root (deterministic; rerunning rewrites identical content):

    python3 tests/reference/make_weights_fixtures.py [FILE ...]

Files are written with libver ('earliest', 'v110') so that the HDF5 1.10 C library reads them.
"""

import os
import sys

import h5py
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")

# Convolutions per block: VGG16 and VGG19 (keras.applications).
VGG16_BLOCKS = [2, 2, 3, 3, 3]
VGG19_BLOCKS = [2, 2, 4, 4, 4]


def vgg_convs(blocks):
    """(name, cin, cout) of the backbone's convolutions."""
    convs, cin = [], 3
    for b, (n, k) in enumerate(zip(blocks, [64, 128, 256, 512, 512]), start=1):
        for i in range(1, n + 1):
            convs.append(("block%d_conv%d" % (b, i), cin, k))
            cin = k
    return convs


VGG = vgg_convs(VGG16_BLOCKS)  # the 13 convolutions of VGG16


def backbone_names(input_name, blocks=VGG16_BLOCKS):
    """Every backbone layer in Keras order, with the input layer first."""
    names = [input_name] if input_name else []
    for b, n in enumerate(blocks, start=1):
        names += ["block%d_conv%d" % (b, i) for i in range(1, n + 1)]
        names.append("block%d_pool" % b)
    return names


def conv_corner(L, c, k):
    cc, kk = min(c, 8), min(k, 8)
    h, w, i, o = np.meshgrid(np.arange(3), np.arange(3), np.arange(cc), np.arange(kk),
                             indexing="ij")
    return ((L * 1024 + h * 256 + w * 64 + i * 8 + o) / 1024.0).astype(np.float32)


def dense_corner(L, n_in, n_out):
    i, o = np.meshgrid(np.arange(min(n_in, 8)), np.arange(min(n_out, 8)), indexing="ij")
    return ((L * 1024 + i * 8 + o) / 1024.0).astype(np.float32)


def bias_values(L, k):
    return (-(L * 64 + np.arange(k) % 64) / 64.0).astype(np.float32)


# Whether the file being written gets conv corners (set per file in main(); see the docstring).
CONV_CORNERS = [False]
DENSE_CORNER_MAX = 513 * 512


def write_kernel(group, name, L, shape, dtype=np.float32):
    """A kernel holding -L/4 everywhere except, where the file calls for it, its corner.

    Without a corner the dataset is contiguous and never written: HDF5 allocates nothing and
    reads return the fill value. With a corner it is chunked along the input axis only (so
    the chunk index stays small), gzip-compressed, and only the first chunk is written."""
    shape = tuple(shape)
    fill = -L / 4.0
    corner = None
    if len(shape) == 4 and CONV_CORNERS[0]:
        chunks = (3, 3, min(shape[2], 8), shape[3])
        corner = conv_corner(L, shape[2], shape[3])
    elif len(shape) == 2 and shape[0] * shape[1] <= DENSE_CORNER_MAX:
        chunks = (min(shape[0], 8), shape[1])
        corner = dense_corner(L, shape[0], shape[1])
    if corner is None:
        return group.create_dataset(name, shape=shape, dtype=dtype, fillvalue=dtype(fill))
    ds = group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, compression="gzip",
                              compression_opts=9, shuffle=True, fillvalue=dtype(fill))
    block = np.full(chunks, fill, dtype=np.float64)
    block[tuple(slice(0, n) for n in corner.shape)] = corner
    ds[tuple(slice(0, n) for n in chunks)] = block.astype(dtype)
    return ds


def write_bias(group, name, L, k):
    return group.create_dataset(name, data=bias_values(L, k), chunks=(k,), compression="gzip",
                                compression_opts=9, shuffle=True)


def strings(names, vlen):
    """A list of names as fixed-length (NUL-padded, numpy 'S') or variable-length strings."""
    if vlen:
        return np.array([n.encode() for n in names], dtype=h5py.string_dtype("ascii"))
    width = max([len(n) for n in names] + [1])
    return np.array([n.encode() for n in names], dtype="S%d" % width)


def empty_names():
    return np.zeros((0,), dtype=np.float64)


def new_file(name):
    os.makedirs(OUT, exist_ok=True)
    return h5py.File(os.path.join(OUT, name), "w", libver=("v110", "v110"), track_order=False)


# ---------------------------------------------------------------------------------------------
# Legacy layouts
# ---------------------------------------------------------------------------------------------

def legacy(root, layers, vlen, wname, L0=0, skip=()):
    """Writes legacy layer groups. `layers`: [(name, kind, shape_args)], kind in
    conv/dense/none. wname(layer, 'kernel'|'bias') gives the weight name. Returns the names."""
    names = []
    L = L0
    for name, kind, args in layers:
        names.append(name)
        g = root.create_group(name)
        if kind == "none" or name in skip:
            g.attrs["weight_names"] = empty_names()
            continue
        L += 1
        kn, bn = wname(name, "kernel"), wname(name, "bias")
        g.attrs["weight_names"] = strings([kn, bn], vlen)
        if kind == "conv":
            c, k = args
            write_kernel(g, kn, L, (3, 3, c, k))
        else:
            i, o = args
            write_kernel(g, kn, L, (i, o))
        write_bias(g, bn, L, args[1])
    return names


def backbone_layers(input_name, blocks=VGG16_BLOCKS):
    convs = {n: (c, k) for n, c, k in vgg_convs(blocks)}
    out = []
    for n in backbone_names(input_name, blocks):
        out.append((n, "conv", convs[n]) if n in convs else (n, "none", None))
    return out


def keras1_name(layer, what):
    return "%s_%s_1:0" % (layer, "W" if what == "kernel" else "b")


def tf2_name(layer, what):
    return "%s/%s:0" % (layer, what)


def k3_name(layer, what):
    return "%s/%s" % (layer, what)


def make_keras1(name, vlen, full=False, blocks=VGG16_BLOCKS):
    with new_file(name) as f:
        layers = backbone_layers("input_1", blocks)
        if full:
            layers += [("flatten", "none", None), ("fc1", "dense", (25088, 4096)),
                       ("fc2", "dense", (4096, 4096)), ("predictions", "dense", (4096, 1000))]
        names = legacy(f, layers, vlen, keras1_name)
        f.attrs["layer_names"] = strings(names, vlen)


def mri_head(flat):
    return [("flatten", "none", None), ("dense", "dense", (flat, 64)),
            ("dense_1", "dense", (64, 2))]


def make_tfkeras2_mri64():
    with new_file("tfkeras2_mri64.h5") as f:
        names = legacy(f, backbone_layers("input_1") + mri_head(2 * 2 * 512), False, tf2_name)
        f.attrs["layer_names"] = strings(names, False)
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"


def make_tfkeras2_seqhead():
    """Model(vgg.input, top(vgg.output)) with a Sequential top: its weights sit in one layer."""
    with new_file("tfkeras2_seqhead.h5") as f:
        names = legacy(f, backbone_layers("input_1"), True, tf2_name)
        g = f.create_group("sequential")
        wn = ["dense/kernel:0", "dense/bias:0", "dense_1/kernel:0", "dense_1/bias:0"]
        g.attrs["weight_names"] = strings(wn, True)
        write_kernel(g, wn[0], 14, (2048, 64))
        write_bias(g, wn[1], 14, 64)
        write_kernel(g, wn[2], 15, (64, 2))
        write_bias(g, wn[3], 15, 2)
        f.attrs["layer_names"] = strings(names + ["sequential"], True)
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"


# The seed iceberg model in Keras 3's model.layers order (checked with Keras 3.15: the aux
# input 'angle' follows block5_pool; the aux Dense 'dense' follows global_max_pooling2d).
ICEBERG_HEAD = [("angle", "none", None), ("global_max_pooling2d", "none", None),
                ("dense", "dense", (1, 1)), ("concatenate", "none", None),
                ("fc2", "dense", (513, 512)), ("dropout", "none", None),
                ("fc3", "dense", (512, 512)), ("dropout_1", "none", None),
                ("dense_1", "dense", (512, 1))]


def keras3_root(root, layers):
    names = legacy(root, layers, True, k3_name)
    root.attrs["layer_names"] = strings(names, True)
    root.attrs["backend"] = "torch"
    root.attrs["keras_version"] = "3.15.1"
    g = root.create_group("top_level_model_weights")
    g.attrs["weight_names"] = empty_names()


def make_keras3_iceberg48():
    with new_file("keras3_iceberg48.h5") as f:
        keras3_root(f, backbone_layers("input_layer") + ICEBERG_HEAD)


def make_keras3_model_mri64():
    with new_file("keras3_model_mri64.h5") as f:
        f.attrs["backend"] = "torch"
        f.attrs["keras_version"] = "3.15.1"
        f.attrs["model_config"] = '{"class_name": "Functional"}'
        keras3_root(f.create_group("model_weights"), backbone_layers("input_layer") +
                    mri_head(2 * 2 * 512))


def make_split_names():
    with new_file("split_names.h5") as f:
        names = legacy(f, backbone_layers("input_1"), True, keras1_name)
        half = len(names) // 2 + 1  # numpy array_split: the first part is the longer
        f.attrs["layer_names0"] = strings(names[:half], True)
        f.attrs["layer_names1"] = strings(names[half:], True)
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"


# ---------------------------------------------------------------------------------------------
# Keras 3 .weights.h5
# ---------------------------------------------------------------------------------------------

def keras3_weights(name, layers, with_names):
    """layers: [(keras name, class, kind, args)] in model.layers order."""
    with new_file(name) as f:
        top = f.create_group("layers")
        f.create_group("vars")
        f.create_group("optimizer").create_group("vars")
        counters = {}
        L = 0
        for lname, cls, kind, args in layers:
            n = counters.get(cls, 0)
            counters[cls] = n + 1
            g = top.create_group(cls if n == 0 else "%s_%d" % (cls, n))
            v = g.create_group("vars")
            if with_names:
                v.attrs["name"] = lname
            if kind == "none":
                continue
            L += 1
            if kind == "conv":
                write_kernel(v, "0", L, (3, 3) + args)
            else:
                write_kernel(v, "0", L, args)
            write_bias(v, "1", L, args[1])


def k3_backbone(input_name):
    convs = {n: (c, k) for n, c, k in VGG}
    out = [(input_name, "input_layer", "none", None)]
    for n in backbone_names(None):
        if n in convs:
            out.append((n, "conv2d", "conv", convs[n]))
        else:
            out.append((n, "max_pooling2d", "none", None))
    return out


def make_keras3_weights():
    ice = k3_backbone("input_layer") + [
        ("angle", "input_layer", "none", None),
        ("global_max_pooling2d", "global_max_pooling2d", "none", None),
        ("dense", "dense", "dense", (1, 1)), ("concatenate", "concatenate", "none", None),
        ("fc2", "dense", "dense", (513, 512)), ("dropout", "dropout", "none", None),
        ("fc3", "dense", "dense", (512, 512)), ("dropout_1", "dropout", "none", None),
        ("dense_1", "dense", "dense", (512, 1))]
    keras3_weights("keras3_iceberg48.weights.h5", ice, True)
    mri = k3_backbone("input_layer") + [
        ("flatten", "flatten", "none", None), ("dense", "dense", "dense", (2048, 64)),
        ("dense_1", "dense", "dense", (64, 2))]
    keras3_weights("keras3_nonames_mri64.weights.h5", mri, False)


# ---------------------------------------------------------------------------------------------
# Error cases (all notop-shaped, so only the item under test is wrong)
# ---------------------------------------------------------------------------------------------

def make_bad():
    with open(os.path.join(OUT, "bad_not_hdf5.h5"), "wb") as f:
        f.write(b"<html><body>404 Not Found</body></html>\n")
    with open(os.path.join(OUT, "keras1_notop_fixed.h5"), "rb") as f:
        data = f.read()
    with open(os.path.join(OUT, "bad_truncated.h5"), "wb") as f:
        f.write(data[: len(data) // 2])
    with new_file("bad_not_keras.h5") as f:
        f.create_dataset("data", data=np.arange(4, dtype=np.float32))

    def notop(name, mutate=None, skip=(), extra=False):
        with new_file(name) as f:
            layers = [l for l in backbone_layers("input_1") if l[0] not in skip]
            names = legacy(f, layers, False, keras1_name)
            if extra:
                g = f.create_group("my_dense")
                g.attrs["weight_names"] = strings(["my_dense_W_1:0", "my_dense_b_1:0"], False)
                write_kernel(g, "my_dense_W_1:0", 14, (2, 2))
                write_bias(g, "my_dense_b_1:0", 14, 2)
                names.append("my_dense")
            if mutate is not None:
                mutate(f)
            f.attrs["layer_names"] = strings(names, False)

    def replace(f, layer, wname, data_or_shape, dtype=np.float32, L=None):
        g = f[layer]
        del g[wname]
        if isinstance(data_or_shape, tuple):
            write_kernel(g, wname, L, data_or_shape, dtype)
        else:
            g.create_dataset(wname, data=data_or_shape)

    notop("bad_missing_layer.h5", skip=("block4_conv3",))
    notop("bad_extra_layer.h5", extra=True)
    # block3_conv2 is the 6th conv: L = 6.
    notop("bad_shape.h5", lambda f: replace(f, "block3_conv2", "block3_conv2_W_1:0",
                                            (3, 3, 128, 256), L=6))
    notop("bad_float64.h5", lambda f: replace(f, "block1_conv1", "block1_conv1_W_1:0",
                                              (3, 3, 3, 64), np.float64, L=1))
    notop("bad_int_kernel.h5", lambda f: replace(f, "block2_conv1", "block2_conv1_W_1:0",
                                                 (3, 3, 64, 128), np.int32, L=3))

    def nan_bias(f):
        b = bias_values(13, 512)
        b[100] = np.nan
        replace(f, "block5_conv3", "block5_conv3_b_1:0", b)

    def inf_kernel(f):
        k = np.full((3, 3, 64, 64), -2 / 4.0, dtype=np.float32)  # block1_conv2: L = 2
        k[1, 2, 3, 4] = np.inf
        del f["block1_conv2"]["block1_conv2_W_1:0"]
        f["block1_conv2"].create_dataset("block1_conv2_W_1:0", data=k, chunks=(3, 3, 8, 64),
                                         compression="gzip", compression_opts=9, shuffle=True)
    notop("bad_nan.h5", nan_bias)
    notop("bad_inf.h5", inf_kernel)

    def missing_dataset(f):
        del f["block2_conv2"]["block2_conv2_b_1:0"]
    notop("bad_missing_dataset.h5", missing_dataset)


# The fixtures by file, each with whether it gets conv corners (the HWIO -> KRSC check goes
# into the official-layout notop files and the Keras 3 .weights.h5; every other file checks
# pairing through the per-layer fill values and biases).
FIXTURES = [
    ("keras1_notop_fixed.h5", True, lambda: make_keras1("keras1_notop_fixed.h5", vlen=False)),
    ("keras1_notop_vlen.h5", True, lambda: make_keras1("keras1_notop_vlen.h5", vlen=True)),
    ("keras1_vgg19_notop.h5", True,
     lambda: make_keras1("keras1_vgg19_notop.h5", vlen=False, blocks=VGG19_BLOCKS)),
    ("keras3_iceberg48.weights.h5", True, make_keras3_weights),
    ("keras1_full.h5", False, lambda: make_keras1("keras1_full.h5", vlen=False, full=True)),
    ("tfkeras2_mri64.h5", False, make_tfkeras2_mri64),
    ("tfkeras2_seqhead.h5", False, make_tfkeras2_seqhead),
    ("keras3_iceberg48.h5", False, make_keras3_iceberg48),
    ("keras3_model_mri64.h5", False, make_keras3_model_mri64),
    ("split_names.h5", False, make_split_names),
    ("bad_*.h5", False, make_bad),
]


def main():
    # All fixtures, or those named on the command line (so that adding one rewrites no other).
    wanted = sys.argv[1:]
    for name, corners, make in FIXTURES:
        if wanted and name not in wanted:
            continue
        CONV_CORNERS[0] = corners
        make()
    CONV_CORNERS[0] = False
    total = 0
    for n in sorted(os.listdir(OUT)):
        if not n.endswith(".h5"):
            continue
        size = os.path.getsize(os.path.join(OUT, n))
        total += size
        print("%-36s %8d bytes" % (n, size))
    print("total %d bytes" % total)


if __name__ == "__main__":
    sys.exit(main())
