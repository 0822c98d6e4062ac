#!/usr/bin/env python3
"""Golden data for the data-pipeline tests (tests/test_data_*.c), from independent implementations:
Pillow (resizing, colour conversion, JPEG decoding, ImageEnhance.Brightness), NumPy (Keras's
preprocess_input arithmetic) and scipy.ndimage.affine_transform (the augmentation resampling).

    pip install pillow numpy scipy
    python3 tests/reference/data_reference.py tests/fixtures/data

Inputs are generated from formulas that the C tests compute too, so only outputs are stored.
The Keras code paths are reproduced line by line from keras/src/legacy/preprocessing/image.py,
keras/src/utils/image_utils.py and keras/src/applications/imagenet_utils.py (Keras 3), without
importing Keras. Written with Pillow 13.0, NumPy 2.4, scipy 1.17.
"""
import io
import os
import sys

import numpy as np
import PIL
import scipy
from PIL import Image, ImageEnhance
from scipy import ndimage

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/data"


# ---- inputs shared with the C tests -----------------------------------------------------------

def pattern_u8(h, w, c):
    """uint8 test image: the same formula as tu_pattern() in tests/test_data_image.c."""
    img = np.zeros((h, w, c), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            for ch in range(c):
                if c == 4 and ch == 3:
                    img[y, x, ch] = [0, 64, 128, 200, 255][(x * 3 + y) % 5]
                else:
                    img[y, x, ch] = (x * 37 + y * 91 + ch * 53 + ((x * y) % 17) * 7) & 255
    return img


def pattern_f32(h, w, c):
    """float test image for the affine tests (same formula as the C test)."""
    img = np.zeros((h, w, c), dtype=np.float32)
    for y in range(h):
        for x in range(w):
            for ch in range(c):
                img[y, x, ch] = ((y * 7 + x * 3 + ch * 5) % 23) * 11.0 + ((y * x) % 3) * 0.25
    return img


def hexbytes(a):
    return a.astype(np.uint8).tobytes().hex()


# ---- resizing: PIL's Image.resize, as Keras's load_img ------------------------------------------

FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def keras_crop_box(width, height, target_w, target_h):
    crop_height = (width * target_h) // target_w
    crop_width = (height * target_w) // target_h
    crop_height = min(height, crop_height)
    crop_width = min(width, crop_width)
    crop_box_hstart = (height - crop_height) // 2
    crop_box_wstart = (width - crop_width) // 2
    return [crop_box_wstart, crop_box_hstart, crop_box_wstart + crop_width,
            crop_box_hstart + crop_height]


def write_resize(path):
    in_h, in_w = 29, 37
    cases = []
    for c in (1, 3):
        for name in FILTERS:
            for (oh, ow, crop) in ((16, 20, False), (20, 24, False), (29, 11, False),
                                   (16, 16, True)):
                cases.append((c, name, oh, ow, crop))
    for name in ("nearest", "bilinear", "lanczos", "box"):
        for (oh, ow, crop) in ((16, 20, False), (40, 45, False)):
            cases.append((4, name, oh, ow, crop))
    with open(path, "w") as f:
        f.write("# c interp in_h in_w out_h out_w crop(0/1) box(x0,y0,x1,y1) hex(out) -- "
                "Pillow %s\n" % PIL.__version__)
        for (c, name, oh, ow, crop) in cases:
            src = pattern_u8(in_h, in_w, c)
            im = Image.fromarray(src[:, :, 0] if c == 1 else src, MODES[c])
            box = keras_crop_box(in_w, in_h, ow, oh) if crop else [0, 0, in_w, in_h]
            out = np.asarray(im.resize((ow, oh), FILTERS[name], box=box if crop else None))
            f.write("%d %s %d %d %d %d %d %s %s\n" % (c, name, in_h, in_w, oh, ow, int(crop),
                                                     ",".join(str(v) for v in box), hexbytes(out)))


# ---- colour conversion and JPEG decoding: PIL --------------------------------------------------

def write_color(path, outdir):
    levels = [0, 1, 2, 37, 127, 128, 201, 254, 255]
    triples = np.array([[r, g, b] for r in levels for g in levels for b in levels], np.uint8)
    rgb = Image.fromarray(triples.reshape(1, -1, 3), "RGB")
    luma = np.asarray(rgb.convert("L")).reshape(-1)
    with open(path, "w") as f:
        f.write("# rgb_to_l: R G B L (PIL convert('L')), then JPEG files and Pillow's decode\n")
        for t, l in zip(triples, luma):
            f.write("rgb_to_l %d %d %d %d\n" % (t[0], t[1], t[2], l))
        # JPEGs written by Pillow (its libjpeg-turbo) and decoded by it, as Keras would load them.
        jpegs = []
        base = pattern_u8(24, 32, 3)
        jpegs.append(("rgb420.jpg", Image.fromarray(base, "RGB"), dict(quality=85)))
        jpegs.append(("rgb444_progressive.jpg", Image.fromarray(base, "RGB"),
                      dict(quality=90, subsampling=0, progressive=True)))
        jpegs.append(("grey.jpg", Image.fromarray(base[:, :, 0], "L"), dict(quality=90)))
        cmyk = np.zeros((16, 16, 4), np.uint8)
        for y in range(16):
            for x in range(16):
                cmyk[y, x] = [(x * 16) & 255, (y * 16) & 255, ((x + y) * 8) & 255,
                              [0, 40, 120, 255][(x // 4) % 4]]
        jpegs.append(("cmyk.jpg", Image.fromarray(cmyk, "CMYK"), dict(quality=95)))
        for name, im, kw in jpegs:
            buf = io.BytesIO()
            im.save(buf, "JPEG", **kw)
            with open(os.path.join(outdir, name), "wb") as jf:
                jf.write(buf.getvalue())
            dec = Image.open(io.BytesIO(buf.getvalue()))
            for mode in ("RGB", "L"):
                arr = np.asarray(dec.convert(mode) if dec.mode != mode else dec)
                f.write("jpeg %s %s %d %d %s\n" % (name, mode, arr.shape[0], arr.shape[1],
                                                   hexbytes(arr)))


# ---- preprocess_input: Keras's NumPy arithmetic (imagenet_utils._preprocess_numpy_input) --------

def keras_preprocess(x, mode):
    x = x.copy()
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    if mode == "torch":
        x /= 255.0
        mean = [0.485, 0.456, 0.406]
        std = [0.229, 0.224, 0.225]
    else:
        x = x[..., ::-1].copy()
        mean = [103.939, 116.779, 123.68]
        std = None
    x[..., 0] -= mean[0]
    x[..., 1] -= mean[1]
    x[..., 2] -= mean[2]
    if std is not None:
        x[..., 0] /= std[0]
        x[..., 1] /= std[1]
        x[..., 2] /= std[2]
    return x


def write_preprocess(path):
    n = 200
    # Same formula as the C test: whole numbers 0..255 and fractions between them.
    x = np.array([[((i * 3 + k * 101) % 256) + (0.0 if i % 4 else 0.3 * k + 0.125)
                   for k in range(3)] for i in range(n)], dtype=np.float32)
    with open(path, "w") as f:
        f.write("# mode index: float32 bit patterns of R G B in, then out (Keras preprocess_input,"
                " NumPy %s)\n" % np.__version__)
        for mode in ("caffe", "tf", "torch"):
            y = keras_preprocess(x, mode)
            assert y.dtype == np.float32
            for i in range(n):
                f.write("%s %d %s %s\n" % (mode, i,
                                          " ".join("%08x" % v for v in x[i].view(np.uint32)),
                                          " ".join("%08x" % v for v in y[i].view(np.uint32))))


# ---- affine resampling: scipy.ndimage.affine_transform with cutune's matrix ---------------------

def matrix(theta, tx, ty, shear, zx, zy, h, w):
    """cutune's matrix (include/cutune/augment.h): Keras's R . Shift . Shear . Zoom on (row, col)
    coordinates about the centre ((h-1)/2, (w-1)/2)."""
    t = np.deg2rad(theta)
    m = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    m = np.dot(m, np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]))
    s = np.deg2rad(shear)
    m = np.dot(m, np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]]))
    m = np.dot(m, np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]]))
    o_r, o_c = float(h) / 2 - 0.5, float(w) / 2 - 0.5
    off = np.array([[1, 0, o_r], [0, 1, o_c], [0, 0, 1]])
    reset = np.array([[1, 0, -o_r], [0, 1, -o_c], [0, 0, 1]])
    return np.dot(np.dot(off, m), reset)


def write_affine(path):
    h, w, c = 13, 11, 2
    x = pattern_f32(h, w, c)
    params = {
        "rot17": (17.0, 0, 0, 0, 1, 1),
        "shift": (0, 2.3, -1.7, 0, 1, 1),
        "shearzoom": (0, 0, 0, 12.0, 0.9, 1.15),
        "combo": (-33.0, -1.2, 3.4, -7.0, 1.2, 0.8),
        "zoomout": (5.0, 0, 0, 0, 1.6, 1.45),
    }
    cases = [(p, mode, 1) for p in params for mode in ("constant", "nearest", "reflect", "wrap")]
    cases += [(p, mode, 0) for p in ("rot17", "combo")
              for mode in ("constant", "nearest", "reflect", "wrap")]
    with open(path, "w") as f:
        f.write("# name mode order cval theta tx ty shear zx zy | m0..m5 | output (h=%d w=%d c=%d)"
                " -- scipy %s\n" % (h, w, c, scipy.__version__))
        for name, mode, order in cases:
            p = params[name]
            m = matrix(*p, h, w)
            out = np.stack([ndimage.affine_transform(x[:, :, k], m[:2, :2], m[:2, 2],
                                                     order=order, mode=mode, cval=-5.0)
                            for k in range(c)], axis=-1)
            assert out.dtype == np.float32
            f.write("%s %s %d -5 %s | %s | %s\n" % (
                name, mode, order, " ".join(repr(float(v)) for v in p),
                " ".join("%.17g" % v for v in m[:2, :].reshape(-1)),
                " ".join("%.9g" % v for v in out.reshape(-1))))


# ---- brightness: Keras 3's apply_brightness_shift(x, b, scale=False) --------------------------

def array_to_img(x, scale):
    x = np.asarray(x, dtype="float32")
    if scale:
        x = x - np.min(x)
        x_max = np.max(x)
        if x_max != 0:
            x /= x_max
        x *= 255
    if x.shape[2] == 3:
        return Image.fromarray(x.astype("uint8"), "RGB")
    return Image.fromarray(x[:, :, 0].astype("uint8"), "L")


def apply_brightness_shift(x, brightness, scale=True):
    x_min, x_max = np.min(x), np.max(x)
    local_scale = (x_min < 0) or (x_max > 255)
    x = array_to_img(x, scale=local_scale or scale)
    x = ImageEnhance.Brightness(x).enhance(brightness)
    x = np.asarray(x, dtype="float32")
    if x.ndim == 2:
        x = x[:, :, None]
    if not scale and local_scale:
        x = x / 255 * (x_max - x_min) + x_min
    return x


def write_brightness(path):
    h, w = 5, 7
    inside = np.array([[[((y * 7 + x * 13 + k * 29) % 256) + 0.37 * ((x + k) % 3)
                         for k in range(3)] for x in range(w)] for y in range(h)], np.float32)
    inside = np.minimum(inside, 255.0).astype(np.float32)
    outside = (inside * 1.3 - 40.0).astype(np.float32)
    with open(path, "w") as f:
        f.write("# image factor | 105 float32 outputs (Keras 3 apply_brightness_shift, scale=False, "
                "Pillow %s)\n" % PIL.__version__)
        for name, img in (("inside", inside), ("outside", outside)):
            for factor in (0.5, 0.85, 1.0, 1.3, 2.5):
                y = apply_brightness_shift(img, np.float32(factor), scale=False)
                f.write("%s %.9g | %s\n" % (name, factor,
                                            " ".join("%.9g" % v for v in
                                                     y.astype(np.float32).reshape(-1))))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    write_resize(os.path.join(OUT, "resize_ref.txt"))
    write_color(os.path.join(OUT, "color_ref.txt"), OUT)
    write_preprocess(os.path.join(OUT, "preprocess_ref.txt"))
    write_affine(os.path.join(OUT, "affine_ref.txt"))
    write_brightness(os.path.join(OUT, "brightness_ref.txt"))
    print("wrote", OUT)
