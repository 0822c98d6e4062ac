# Seed corpora for the libFuzzer harnesses of tests/fuzz/, made here rather than committed.
"""Seed corpora for the libFuzzer harnesses of tests/fuzz/.

    python3 tests/fuzz/make_corpus.py --cutune BUILD/cutune --out DIR

writes one folder per harness under DIR:
  image/       small PNGs of every colour type (grey, grey+alpha, RGB, RGBA, palette with
               tRNS, 1-bit, 16-bit, Adam7-interlaced), JPEGs (grey, 4:2:0, progressive 4:4:4,
               CMYK, and the JPEG fixtures of tests/fixtures/data), a GIF, BMPs (24-bit, palette,
               32-bit), PPM/PGM, TIFFs (LZW RGB, RGBA, palette, group 4 bilevel, CMYK, 16-bit
               grey)
  iceberg/     a 2-record training file (one "na" angle) and a 2-record test file
  config/      `--config` files in the forms the reader accepts, and a run's config.txt
  weights/     the weight fixtures of tests/fixtures and a model file cutune wrote
  checkpoint/  a checkpoint cutune wrote
The model file and the checkpoint come from `cutune train --weights none` on a tiny generated
dataset, with the model of fuzz_util.c (64x64, mri head, backbone frozen, SGD with momentum).
Their arrays above 4096 values are rewritten as unallocated datasets (HDF5 reads zeros), which
keeps every name, attribute and type as cutune wrote them in 20-50 KB instead of 60 MB.
Needs Pillow, NumPy and h5py (Debian: python3-pil python3-h5py).
"""
import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

try:
    import h5py
    from PIL import Image
except ImportError as e:  # say what to install, not a traceback
    sys.exit(f"make_corpus.py: {e.name} is missing (Debian: apt-get install python3-pil "
             "python3-h5py)")

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
COMPACT_ABOVE = 4096  # values: larger arrays become unallocated datasets


def gradient(w, h):
    """An RGB image with some structure for the filters to work on."""
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 255) // max(w - 1, 1), (y * 255) // max(h - 1, 1), (x * y * 7) % 256)
                 for y in range(h) for x in range(w)])
    return img


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_adam7(img):
    """An interlaced 8-bit RGB PNG (Pillow writes none): the seven Adam7 passes, filter 0."""
    w, h = img.size
    px = img.load()
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        cols = range(x0, w, dx)
        if not cols:
            continue
        for y in range(y0, h, dy):
            raw.append(0)
            for x in cols:
                raw.extend(px[x, y])
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + png_chunk(b"IEND", b""))


def images(out):
    base = gradient(12, 9)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    pal = base.convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 3
    saves = {
        "grey.png": (base.convert("L"), {}),
        "grey_alpha.png": (rgba.convert("LA"), {}),
        "rgb.png": (base, {}),
        "rgba.png": (rgba, {}),
        "palette_trns.png": (pal, {"transparency": 3}),
        "bilevel.png": (base.convert("1"), {}),
        "grey16.png": (base.convert("I").point(lambda v: v * 257).convert("I;16"), {}),
        "grey.jpg": (base.convert("L"), {"quality": 75}),
        "rgb420.jpg": (base, {"quality": 75, "subsampling": 2}),
        "rgb444_progressive.jpg": (base, {"quality": 90, "subsampling": 0,
                                          "progressive": True}),
        "cmyk.jpg": (base.convert("CMYK"), {"quality": 80}),
        "tiny.gif": (base.resize((2, 2)), {}),
        "tiny.bmp": (base.resize((2, 2)), {}),
        "palette.bmp": (pal, {}),
        "rgba.bmp": (rgba, {}),
        "rgb.ppm": (base, {}),
        "grey.pgm": (base.convert("L"), {}),
        "rgb_lzw.tif": (base, {"compression": "tiff_lzw"}),
        "rgba.tif": (rgba, {}),
        "palette.tif": (pal, {}),
        "bilevel_g4.tif": (base.convert("1"), {"compression": "group4"}),
        "cmyk.tif": (base.convert("CMYK"), {}),
        "grey16.tif": (base.convert("I").point(lambda v: v * 257).convert("I;16"), {}),
    }
    for name, (img, opts) in saves.items():
        img.save(os.path.join(out, name), **opts)
    with open(os.path.join(out, "rgb_adam7.png"), "wb") as f:
        f.write(png_adam7(gradient(11, 10)))
    data = os.path.join(FIXTURES, "data")
    for name in sorted(os.listdir(data)):
        if name.endswith(".jpg"):
            shutil.copy(os.path.join(data, name), os.path.join(out, "fixture_" + name))


def iceberg(out):
    rnd = random.Random(1)
    band = lambda digits: [round(rnd.uniform(-40.0, 5.0), digits) for _ in range(75 * 75)]
    train = [
        {"id": "a0", "band_1": band(1), "band_2": band(1), "inc_angle": 39.5, "is_iceberg": 0},
        {"id": "a1", "band_1": band(1), "band_2": band(1), "inc_angle": "na", "is_iceberg": 1},
    ]
    test = [{"id": "t0", "band_1": band(0), "band_2": band(0), "inc_angle": "na"},
            {"id": "t1", "band_1": band(0), "band_2": band(0), "inc_angle": 41}]
    for name, records in (("train.json", train), ("test.json", test)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(records, f, separators=(",", ":"))


CONFIGS = {
    "mri.txt": """# the seed book's MRI recipe
data = mri/train
val = mri/test
input-size = 150
head = mri
strategy = head
optimizer = adam
lr = 0.0002
epochs = 20
horizontal-flip
zoom-range = 0.2
out = runs/mri
""",
    "iceberg.txt": """# Keras spellings: underscores, True/False switches
data = train.json
validation_split = 0.2
head = iceberg
optimizer = sgd
lr = 0.001
momentum = 0.9
nesterov = True
decay = 1e-6
horizontal_flip = true
vertical_flip = yes
zoom_range = 0.2
rotation_range = 10
patience = 10
restore_best_weights = 1
na_policy = median
schedule = step:10:0.5
batch_size = 32
""",
    "odd.txt": "\t  # indented comment\r\n\r\nbatch-size=8\r\nclass_weight = balanced\n"
               "brightness_range = 0.8,1.2\nwidth_shift_range = 12\nfolds = 3\ntest = t.json\n"
               "horizontal-flip = false\nkey-without-value\ninterpolation = lanczos\n"
               "lr = = 0.1\nwarmup-epochs = 2\nfreeze-to = block4_pool\n"
               "block-lr-decay = 0.5\nreduce_lr_patience = 3\n",
}


def configs(out, run_dir):
    for name, text in CONFIGS.items():
        with open(os.path.join(out, name), "w", newline="") as f:
            f.write(text)
    shutil.copy(os.path.join(run_dir, "config.txt"), os.path.join(out, "run_config.txt"))


def compact(src_path, dst_path):
    """Copies an HDF5 file's groups and attributes as they are, and its datasets with data up
    to COMPACT_ABOVE values; larger ones keep shape and type but no storage."""
    with h5py.File(src_path, "r") as src, h5py.File(dst_path, "w") as dst:
        def copy_attrs(s, d):
            for k in s.attrs:
                d.attrs.create(k, s.attrs[k], dtype=s.attrs.get_id(k).dtype)

        def visit(name, obj):
            if isinstance(obj, h5py.Group):
                copy_attrs(obj, dst.require_group(name))
            elif obj.size > COMPACT_ABOVE:
                copy_attrs(obj, dst.create_dataset(name, shape=obj.shape, dtype=obj.dtype))
            else:
                copy_attrs(obj, dst.create_dataset(name, data=obj[()]))

        copy_attrs(src, dst)
        src.visititems(visit)


def train_run(cutune, work):
    """`cutune train` on four tiny images with the harnesses' model; returns the run folder."""
    for k, cls in enumerate(("dementia", "normal")):
        os.makedirs(os.path.join(work, "data", cls))
        for i in range(2):
            gradient(20 + i, 16).rotate(90 * k).save(os.path.join(work, "data", cls, f"{i}.png"))
    run = os.path.join(work, "run")
    cmd = [cutune, "train", "--data", os.path.join(work, "data"), "--out", run,
           "--weights", "none", "--input-size", "64", "--head", "mri", "--strategy", "head",
           "--optimizer", "sgd", "--momentum", "0.9", "--epochs", "1", "--batch-size", "2",
           "--verbose", "0", "--device", "cpu"]
    env = dict(os.environ, CUTUNE_OFFLINE="1")
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"make_corpus.py: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}")
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutune", required=True, help="the cutune command of the build")
    ap.add_argument("--out", required=True, help="folder for the seed folders (replaced)")
    args = ap.parse_args()
    kinds = ("image", "iceberg", "config", "weights", "checkpoint")
    for k in kinds:
        shutil.rmtree(os.path.join(args.out, k), ignore_errors=True)
        os.makedirs(os.path.join(args.out, k))
    images(os.path.join(args.out, "image"))
    iceberg(os.path.join(args.out, "iceberg"))
    with tempfile.TemporaryDirectory(prefix="cutune-seeds-") as work:
        run = train_run(os.path.abspath(args.cutune), work)
        configs(os.path.join(args.out, "config"), run)
        compact(os.path.join(run, "checkpoint.h5"),
                os.path.join(args.out, "checkpoint", "cutune_checkpoint.h5"))
        compact(os.path.join(run, "best.h5"), os.path.join(args.out, "weights", "cutune_best.h5"))
    shutil.copy(os.path.join(args.out, "checkpoint", "cutune_checkpoint.h5"),
                os.path.join(args.out, "weights"))
    for name in sorted(os.listdir(FIXTURES)):
        if name.endswith(".h5"):
            shutil.copy(os.path.join(FIXTURES, name), os.path.join(args.out, "weights", name))
    for k in kinds:
        files = os.listdir(os.path.join(args.out, k))
        size = sum(os.path.getsize(os.path.join(args.out, k, f)) for f in files)
        print(f"{k}: {len(files)} seeds, {size // 1024} KB")


if __name__ == "__main__":
    main()
