/* From a file to an image: reading, recognising the format by its signature (not its extension,
 * as PIL does), dispatching to the PNG (libpng), JPEG (libjpeg-turbo), TIFF (libtiff) or BMP and
 * PPM/PGM (stb_image) decoder, converting to the requested colour mode the way PIL's
 * Image.convert does, and resizing as Keras's load_img does. GIF and WebP, which
 * flow_from_directory does not count, are refused with a message that says what to do. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

void ct_image_options_defaults(ct_image_options *o) {
    memset(o, 0, sizeof *o);
    o->target_h = 256;
    o->target_w = 256;
    o->color_mode = CT_COLOR_RGB;
    o->interpolation = CT_INTERP_NEAREST;
    o->keep_aspect_ratio = false;
    o->max_pixels = CT_DEFAULT_MAX_PIXELS;
}

int ct_color_mode_channels(ct_color_mode m) {
    return m == CT_COLOR_GRAYSCALE ? 1 : (m == CT_COLOR_RGBA ? 4 : 3);
}

void ct_image_free(ct_image *img) {
    if (img == NULL) return;
    free(img->data);
    img->data = NULL;
    img->h = img->w = img->c = 0;
}

ct_status ct_data_check_pixels(const char *name, uint64_t w, uint64_t h, uint64_t max_pixels) {
    if (max_pixels == 0) max_pixels = CT_DEFAULT_MAX_PIXELS;
    if (w == 0 || h == 0)
        return ct_error(CT_EFORMAT, "%s: image has no pixels (%llux%llu)", name,
                        (unsigned long long)w, (unsigned long long)h);
    if (w * h > max_pixels)
        return ct_error(CT_EFORMAT,
                        "%s: %llux%llu image (%.1f Mpx) exceeds the %.1f Mpx limit "
                        "(decompression-bomb guard; raise max_pixels if the file is genuine)",
                        name, (unsigned long long)w, (unsigned long long)h,
                        (double)(w * h) / 1048576.0, (double)max_pixels / 1048576.0);
    return CT_OK;
}

ct_status ct_data_read_file(const char *path, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ct_error(errno == ENOENT ? CT_ENOTFOUND : CT_EIO, "%s: cannot open: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ct_error(CT_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ct_error(CT_EIO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) {
        close(fd);
        return ct_error(CT_ENOMEM, "%s: cannot allocate %zu bytes to read it", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return ct_error(CT_EIO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break; /* shrank while reading: decode what is there */
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = got;
    return CT_OK;
}

/* The format of a file from its first bytes. */
typedef enum { FMT_UNKNOWN, FMT_PNG, FMT_JPEG, FMT_BMP, FMT_GIF, FMT_TIFF, FMT_PPM, FMT_WEBP } fmt;

static fmt sniff(const uint8_t *b, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(b, png_sig, 8) == 0) return FMT_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return FMT_JPEG;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return FMT_BMP;
    if (n >= 4 && memcmp(b, "GIF8", 4) == 0) return FMT_GIF;
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)) return FMT_TIFF;
    if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7') return FMT_PPM;
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return FMT_WEBP;
    return FMT_UNKNOWN;
}

/* Converts a decoded image (c = 1, 2, 3 or 4) to `mode`, as PIL's convert() does: L -> RGB
 * repeats the grey; LA/RGBA -> RGB or L drop the alpha; RGB -> L uses ITU-R 601-2 luma; a
 * missing alpha becomes 255. */
static ct_status convert(ct_image *img, ct_color_mode mode, const char *name) {
    const int want = ct_color_mode_channels(mode);
    if (img->c == want) return CT_OK;
    const size_t np = (size_t)img->h * img->w;
    uint8_t *out = malloc(np * want);
    if (out == NULL)
        return ct_error(CT_ENOMEM, "%s: cannot allocate %dx%d pixels", name, img->w, img->h);
    const uint8_t *in = img->data;
    const int c = img->c;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *p = in + i * c;
        uint8_t r, g, b, a;
        if (c <= 2) {
            r = g = b = p[0];
            a = c == 2 ? p[1] : 255;
        } else {
            r = p[0];
            g = p[1];
            b = p[2];
            a = c == 4 ? p[3] : 255;
        }
        uint8_t *q = out + i * want;
        if (want == 1) {
            q[0] = c <= 2 ? r : ct_data_luma(r, g, b);
        } else {
            q[0] = r;
            q[1] = g;
            q[2] = b;
            if (want == 4) q[3] = a;
        }
    }
    free(img->data);
    img->data = out;
    img->c = want;
    return CT_OK;
}

/* The refusal of a format no library here decodes. */
static ct_status unsupported(const char *name, const char *format) {
    return ct_error(CT_EUNSUPPORTED, "%s: unsupported format (%s): convert to PNG or JPEG", name,
                    format);
}

ct_status ct_image_decode_with(const void *bytes, size_t size, const char *name,
                               const ct_image_options *o, ct_image *out) {
    memset(out, 0, sizeof *out);
    if (name == NULL) name = "(memory)";
    const ct_color_mode mode = o->color_mode;
    if (mode != CT_COLOR_RGB && mode != CT_COLOR_GRAYSCALE && mode != CT_COLOR_RGBA)
        return ct_error(CT_EINVAL, "%s: unknown color mode %d", name, (int)mode);
    if (o->png16 != CT_PNG16_CLIP && o->png16 != CT_PNG16_SCALE)
        return ct_error(CT_EINVAL, "%s: unknown png16 mode %d", name, (int)o->png16);
    if (size == 0) return ct_error(CT_EFORMAT, "%s: empty file (0 bytes)", name);
    const uint8_t *b = bytes;
    const uint64_t max_pixels = o->max_pixels;
    ct_status s;
    switch (sniff(b, size)) {
    case FMT_PNG:
        s = ct_data_decode_png(b, size, name, max_pixels, o->png16, out);
        break;
    case FMT_JPEG:
        s = ct_data_decode_jpeg(b, size, name, max_pixels, out);
        break;
    case FMT_BMP:
        s = ct_data_decode_stb(b, size, name, true, max_pixels, out);
        break;
    case FMT_PPM:
        s = ct_data_decode_stb(b, size, name, false, max_pixels, out);
        break;
    case FMT_TIFF:
        s = ct_data_decode_tiff(b, size, name, max_pixels, o->png16, out);
        break;
    case FMT_GIF:
        return unsupported(name, "GIF");
    case FMT_WEBP:
        return unsupported(name, "WebP");
    default: {
        char hex[3 * 8 + 1] = "";
        int at = 0;
        for (size_t i = 0; i < size && i < 8; i++)
            at += snprintf(hex + at, sizeof hex - (size_t)at, "%s%02x", i ? " " : "", b[i]);
        return ct_error(CT_EFORMAT, "%s: not an image (unrecognised signature %s)", name, hex);
    }
    }
    if (s != CT_OK) return s;
    if ((s = convert(out, mode, name)) != CT_OK) ct_image_free(out);
    return s;
}

ct_status ct_image_decode(const void *bytes, size_t size, const char *name, ct_color_mode mode,
                          uint64_t max_pixels, ct_image *out) {
    ct_image_options o;
    ct_image_options_defaults(&o);
    o.color_mode = mode;
    o.max_pixels = max_pixels;
    return ct_image_decode_with(bytes, size, name, &o, out);
}

ct_status ct_image_load(const char *path, const ct_image_options *o, ct_image *out) {
    memset(out, 0, sizeof *out);
    if (o->target_h < 0 || o->target_w < 0 || (o->target_h == 0) != (o->target_w == 0))
        return ct_error(CT_EINVAL, "target size %dx%d: give both sides, or neither", o->target_h,
                        o->target_w);
    uint8_t *bytes = NULL;
    size_t size = 0;
    ct_status s = ct_data_read_file(path, &bytes, &size);
    if (s != CT_OK) return s;
    ct_image img;
    s = ct_image_decode_with(bytes, size, path, o, &img);
    free(bytes);
    if (s != CT_OK) return s;
    /* Keras resizes only when the size differs; then the crop box applies too. */
    if (o->target_h == 0 || (img.h == o->target_h && img.w == o->target_w)) {
        *out = img;
        return CT_OK;
    }
    float box[4];
    if (o->keep_aspect_ratio) ct_image_crop_box(img.h, img.w, o->target_h, o->target_w, box);
    s = ct_image_resize(&img, o->target_h, o->target_w, o->interpolation,
                        o->keep_aspect_ratio ? box : NULL, out);
    ct_image_free(&img);
    if (s != CT_OK) {
        /* Keep the file name in the message. */
        char msg[768];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        return ct_error(s, "%s: %s", path, msg);
    }
    return CT_OK;
}
