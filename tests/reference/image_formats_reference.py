#!/usr/bin/env python3
"""Image files in every format flow_from_directory counts, and Pillow's pixels for each, for
tests/test_data_formats.c.

    pip install pillow numpy
    python3 tests/reference/image_formats_reference.py tests/fixtures/data/formats

PNG files are written byte by byte here (a few lines of zlib and struct), so every colour type
and bit depth is covered, including those Pillow cannot save (2-bit grey, 16-bit RGB, 16-bit grey
with tRNS). BMP, PPM/PGM and TIFF files are saved by Pillow. Each file is then read back the way
Keras's load_img reads it (keras/src/utils/image_utils.py, Keras 3):

    rgb:       img.convert("RGB") unless img.mode == "RGB"
    rgba:      img.convert("RGBA") unless img.mode == "RGBA"
    grayscale: img.convert("L") unless img.mode in ("L", "I;16", "I")

and the uint8 pixels go to formats_ref.txt, one line per (file, mode, png16):

    <file> <rgb|grayscale|rgba> <clip|scale> <h> <w> <c> <hex pixels>

Keras's grayscale mode keeps a 16-bit grey image's values (up to 65535), which no uint8 image can
hold; for those files the grayscale line holds Pillow's convert("L"), which clips like the rgb
line. The scale lines (cutune's --png16 scale, no Keras equivalent) are round(v / 257) of the
16-bit values, computed here with NumPy. Written with Pillow 13.0, NumPy 2.4.
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/data/formats"
H, W = 5, 7


def samples(c, depth, seed=0):
    """(H, W, c) integer test samples in [0, 2**depth), with small and large 16-bit values."""
    top = (1 << depth) - 1
    a = np.zeros((H, W, c), dtype=np.int64)
    for y in range(H):
        for x in range(W):
            for k in range(c):
                v = (x * 37 + y * 91 + k * 53 + seed * 17 + ((x * y) % 7) * 11)
                if depth == 16:
                    # Half the pixels below 256 (kept by Keras's clip), half above.
                    v = v % 256 if (x + y) % 2 else (v * 263 + 300) % 65536
                a[y, x, k] = v % (top + 1)
    return a


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(a, color_type, depth, palette=None, trns=None):
    """A PNG of the samples a (H, W, c), no interlace, filter 0 on every row."""
    h, w, c = a.shape
    rows = []
    for y in range(h):
        flat = a[y].reshape(-1)
        if depth == 16:
            raw = b"".join(struct.pack(">H", int(v)) for v in flat)
        elif depth == 8:
            raw = bytes(int(v) for v in flat)
        else:
            per = 8 // depth
            raw = bytearray()
            for i in range(0, len(flat), per):
                byte = 0
                for j in range(per):
                    v = int(flat[i + j]) if i + j < len(flat) else 0
                    byte |= v << (8 - depth * (j + 1))
                raw.append(byte)
            raw = bytes(raw)
        rows.append(b"\0" + raw)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0))
    if palette is not None:
        out += chunk(b"PLTE", bytes(palette))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    out += chunk(b"IDAT", zlib.compress(b"".join(rows)))
    return out + chunk(b"IEND", b"")


def png_cases():
    """(name, bytes, 16-bit grey samples or None)."""
    cases = []
    for d in (1, 2, 4, 8, 16):
        a = samples(1, d)
        cases.append((f"grey{d}.png", png_bytes(a, 0, d), a if d == 16 else None))
    for d in (8, 16):
        a = samples(1, d)
        key = struct.pack(">H", int(a[0, 0, 0]))
        cases.append((f"grey{d}_trns.png", png_bytes(a, 0, d, trns=key), a if d == 16 else None))
        cases.append((f"grey_alpha{d}.png", png_bytes(samples(2, d), 4, d), None))
        cases.append((f"rgb{d}.png", png_bytes(samples(3, d), 2, d), None))
        a = samples(3, d)
        key = b"".join(struct.pack(">H", int(v)) for v in a[0, 0])
        cases.append((f"rgb{d}_trns.png", png_bytes(a, 2, d, trns=key), None))
        cases.append((f"rgba{d}.png", png_bytes(samples(4, d), 6, d), None))
    for d in (1, 2, 4, 8):
        n = 1 << d
        pal = []
        for i in range(n):
            pal += [(i * 31) & 255, (i * 67 + 5) & 255, (i * 113 + 9) & 255]
        a = samples(1, d, seed=3)
        cases.append((f"palette{d}.png", png_bytes(a, 3, d, palette=pal), None))
        trns = bytes((255 - i * 37) & 255 for i in range(n // 2 + 1))
        cases.append((f"palette{d}_trns.png", png_bytes(a, 3, d, palette=pal, trns=trns), None))
    return cases


def pil_image(mode, seed=0):
    """A Pillow image of the given mode with the shared pattern."""
    if mode == "1":
        return Image.fromarray((samples(1, 8, seed)[..., 0] % 3 == 0)).convert("1")
    if mode == "I;16":
        return Image.fromarray(samples(1, 16, seed)[..., 0].astype(np.uint16))
    if mode == "P":
        return Image.fromarray(samples(3, 8, seed).astype(np.uint8)).quantize(colors=13)
    c = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
    a = samples(c, 8, seed).astype(np.uint8)
    return Image.frombytes(mode, (W, H), a.tobytes())


def saved(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def other_cases():
    cases = []
    for name, mode in (("rgb", "RGB"), ("rgba", "RGBA"), ("grey", "L"), ("palette", "P"),
                       ("bilevel", "1")):
        cases.append((f"{name}.bmp", saved(pil_image(mode), "BMP"), None))
    cases.append(("rgb.ppm", saved(pil_image("RGB"), "PPM"), None))
    cases.append(("grey.ppm", saved(pil_image("L"), "PPM"), None))
    tiffs = [("rgb", "RGB", None), ("rgb_lzw", "RGB", "tiff_lzw"),
             ("rgb_deflate", "RGB", "tiff_adobe_deflate"), ("rgb_packbits", "RGB", "packbits"),
             ("rgba", "RGBA", None), ("grey", "L", None), ("grey_alpha", "LA", None),
             ("palette", "P", None), ("bilevel", "1", None), ("bilevel_g4", "1", "group4"),
             ("cmyk", "CMYK", None)]
    for name, mode, comp in tiffs:
        kw = {"compression": comp} if comp else {}
        cases.append((f"{name}.tif", saved(pil_image(mode), "TIFF", **kw), None))
    a = samples(1, 16)
    cases.append(("grey16.tiff", saved(pil_image("I;16"), "TIFF"), a))
    return cases


def keras_pixels(img, mode):
    """load_img's conversion for color_mode `mode`, as uint8 (H, W, c)."""
    if mode == "rgb":
        img = img if img.mode == "RGB" else img.convert("RGB")
    elif mode == "rgba":
        img = img if img.mode == "RGBA" else img.convert("RGBA")
    else:
        img = img if img.mode == "L" else img.convert("L")  # I;16: see the docstring
    a = np.asarray(img)
    assert a.dtype == np.uint8, (img.mode, a.dtype)
    return a.reshape(img.size[1], img.size[0], -1)


def scaled_pixels(a16, mode):
    """--png16 scale: round(v / 257), as grey, RGB or RGBA (alpha 255)."""
    g = ((a16[..., 0] + 128) // 257).astype(np.uint8)[..., None]
    if mode == "grayscale":
        return g
    rgb = np.concatenate([g, g, g], axis=2)
    if mode == "rgb":
        return rgb
    return np.concatenate([rgb, np.full_like(g, 255)], axis=2)


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = [f"# Pillow {PIL.__version__}, NumPy {np.__version__}: "
             "tests/reference/image_formats_reference.py"]
    for name, data, a16 in png_cases() + other_cases():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        img = Image.open(io.BytesIO(data))
        img.load()
        for mode in ("rgb", "grayscale", "rgba"):
            px = keras_pixels(img, mode)
            h, w, c = px.shape
            lines.append(f"{name} {mode} clip {h} {w} {c} {px.tobytes().hex()}")
            if a16 is not None:
                px = scaled_pixels(a16, mode)
                lines.append(f"{name} {mode} scale {h} {w} {px.shape[2]} {px.tobytes().hex()}")
    with open(os.path.join(OUT, "formats_ref.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 1} reference lines to {OUT}")


if __name__ == "__main__":
    main()
