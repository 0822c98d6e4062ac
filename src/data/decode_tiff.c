/* TIFF decoding through libtiff, from memory, to the pixels PIL gives Keras.
 *
 * libtiff reads the file through client callbacks over the bytes in memory; its error and
 * warning handlers are set per open (TIFFOpenOptions), so messages land in this call's buffer and
 * nothing is printed or shared between threads. The first image of the file is decoded, as PIL
 * opens the first frame.
 *
 * Two paths. Strip images of 8-bit grey (with or without alpha), RGB, RGBA and CMYK, and 16-bit
 * grey, are read row by row as stored, because libtiff's RGBA interface would premultiply an
 * unassociated alpha and round CMYK differently from PIL: CMYK becomes RGB with PIL's cmyk2rgb
 * (R = (255 - K) - (255 - K) C / 255, rounded as PIL does), and 16-bit grey (PIL's I;16) is
 * clipped at 255 as Keras's convert('RGB') does, or scaled with CT_PNG16_SCALE (round(v / 257)).
 * Everything else (palette, 1-bit, tiled, planar, YCbCr, Old-JPEG, 16-bit colour) goes through
 * libtiff's TIFFReadRGBAImageOriented, whose arithmetic for those is PIL's (palette entries
 * divided by 256, 1-bit to 0 or 255). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

#include "internal.h"

typedef struct tiff_source {
    const uint8_t *bytes;
    size_t size, pos;
    char message[256];
} tiff_source;

static tmsize_t read_cb(thandle_t h, void *buf, tmsize_t n) {
    tiff_source *s = h;
    if (n < 0) return -1;
    size_t left = s->pos < s->size ? s->size - s->pos : 0;
    size_t k = (size_t)n < left ? (size_t)n : left;
    memcpy(buf, s->bytes + s->pos, k);
    s->pos += k;
    return (tmsize_t)k;
}

static tmsize_t write_cb(thandle_t h, void *buf, tmsize_t n) {
    (void)h;
    (void)buf;
    (void)n;
    return -1; /* read only */
}

static toff_t seek_cb(thandle_t h, toff_t off, int whence) {
    tiff_source *s = h;
    /* toff_t is unsigned; a SEEK_CUR or SEEK_END offset may be negative in two's complement. */
    const int64_t base = whence == SEEK_SET ? 0 : (int64_t)(whence == SEEK_CUR ? s->pos : s->size);
    const int64_t at = base + (int64_t)off;
    if (at < 0) return (toff_t)-1;
    s->pos = (size_t)at;
    return (toff_t)at;
}

static int close_cb(thandle_t h) {
    (void)h;
    return 0;
}

static toff_t size_cb(thandle_t h) { return ((tiff_source *)h)->size; }

/* The first error is kept: it is the cause; what follows is libtiff giving up. */
static int error_cb(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    (void)module;
    tiff_source *s = user;
    if (s->message[0] == '\0') vsnprintf(s->message, sizeof s->message, fmt, ap);
    return 1;
}

/* Warnings (unknown tags, ...) do not change the pixels. */
static int warning_cb(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    (void)user;
    (void)module;
    (void)fmt;
    (void)ap;
    return 1;
}

typedef struct tiff_layout {
    uint32_t w, h;
    uint16_t spp, bps, photometric, planar, inkset;
} tiff_layout;

/* Whether the image is read as stored (see the top of the file) and its channels if so. */
static bool direct_channels(TIFF *tif, const tiff_layout *l, int *c) {
    if (TIFFIsTiled(tif) || l->planar != PLANARCONFIG_CONTIG) return false;
    if (l->bps == 8 && l->photometric == PHOTOMETRIC_MINISBLACK && (l->spp == 1 || l->spp == 2))
        *c = l->spp;
    else if (l->bps == 8 && l->photometric == PHOTOMETRIC_RGB && (l->spp == 3 || l->spp == 4))
        *c = l->spp;
    else if (l->bps == 8 && l->photometric == PHOTOMETRIC_SEPARATED && l->spp == 4 &&
             l->inkset == INKSET_CMYK)
        *c = 3;
    else if (l->bps == 16 && l->photometric == PHOTOMETRIC_MINISBLACK && l->spp == 1)
        *c = 1;
    else
        return false;
    return true;
}

/* One stored row (`in`, spp samples of bps bits) to `c` 8-bit channels. */
static void convert_row(const tiff_layout *l, const uint8_t *in, uint8_t *out, int c,
                        ct_png16 png16) {
    if (l->bps == 16) {
        const uint16_t *v = (const uint16_t *)(const void *)in; /* host order after libtiff */
        for (uint32_t x = 0; x < l->w; x++)
            out[x] = png16 == CT_PNG16_SCALE ? (uint8_t)((v[x] + 128u) / 257u)
                                             : (uint8_t)(v[x] > 255 ? 255 : v[x]);
    } else if (l->photometric == PHOTOMETRIC_SEPARATED) {
        for (uint32_t x = 0; x < l->w; x++) {
            const uint8_t *p = in + (size_t)x * 4;
            const uint32_t nk = 255u - p[3];
            for (int ch = 0; ch < 3; ch++)
                out[(size_t)x * 3 + ch] = (uint8_t)(nk - ct_data_muldiv255(p[ch], nk));
        }
    } else {
        memcpy(out, in, (size_t)l->w * c);
    }
}

static ct_status read_direct(TIFF *tif, const tiff_layout *l, int c, ct_png16 png16,
                             const char *name, tiff_source *src, ct_image *out) {
    const tmsize_t line = TIFFScanlineSize(tif);
    if (line < (tmsize_t)((size_t)l->w * l->spp * (l->bps / 8)))
        return ct_error(CT_EFORMAT, "%s: corrupt TIFF: scanline of %lld bytes for %u pixels",
                        name, (long long)line, (unsigned)l->w);
    uint8_t *row = malloc((size_t)line);
    uint8_t *pixels = malloc((size_t)l->h * l->w * c);
    if (row == NULL || pixels == NULL) {
        free(row);
        free(pixels);
        return ct_error(CT_ENOMEM, "%s: cannot allocate %ux%u pixels", name, (unsigned)l->w,
                        (unsigned)l->h);
    }
    for (uint32_t y = 0; y < l->h; y++) {
        if (TIFFReadScanline(tif, row, y, 0) < 0) {
            free(row);
            free(pixels);
            return ct_error(CT_EFORMAT, "%s: corrupt or truncated TIFF: %s", name,
                            src->message[0] ? src->message : "cannot read a row");
        }
        convert_row(l, row, pixels + (size_t)y * l->w * c, c, png16);
    }
    free(row);
    out->data = pixels;
    out->c = c;
    return CT_OK;
}

static ct_status read_rgba(TIFF *tif, const tiff_layout *l, const char *name, tiff_source *src,
                           ct_image *out) {
    char why[1024] = "";
    if (!TIFFRGBAImageOK(tif, why))
        return ct_error(CT_EUNSUPPORTED, "%s: unsupported TIFF layout: %s", name, why);
    uint16_t n_extra = 0, *extra = NULL;
    TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &n_extra, &extra);
    const bool grey = (l->photometric == PHOTOMETRIC_MINISBLACK ||
                       l->photometric == PHOTOMETRIC_MINISWHITE) && l->spp == 1;
    const int c = n_extra > 0 ? 4 : (grey ? 1 : 3);
    const size_t np = (size_t)l->w * l->h;
    uint32_t *raster = malloc(np * sizeof *raster);
    uint8_t *pixels = malloc(np * c);
    if (raster == NULL || pixels == NULL) {
        free(raster);
        free(pixels);
        return ct_error(CT_ENOMEM, "%s: cannot allocate %ux%u pixels", name, (unsigned)l->w,
                        (unsigned)l->h);
    }
    if (!TIFFReadRGBAImageOriented(tif, l->w, l->h, raster, ORIENTATION_TOPLEFT, 0)) {
        free(raster);
        free(pixels);
        return ct_error(CT_EFORMAT, "%s: corrupt or truncated TIFF: %s", name,
                        src->message[0] ? src->message : "cannot decode the image");
    }
    for (size_t i = 0; i < np; i++) {
        const uint32_t p = raster[i];
        const uint8_t rgba[4] = {(uint8_t)TIFFGetR(p), (uint8_t)TIFFGetG(p), (uint8_t)TIFFGetB(p),
                                 (uint8_t)TIFFGetA(p)};
        memcpy(pixels + i * c, rgba, (size_t)c);
    }
    free(raster);
    out->data = pixels;
    out->c = c;
    return CT_OK;
}

ct_status ct_data_decode_tiff(const uint8_t *bytes, size_t size, const char *name,
                              uint64_t max_pixels, ct_png16 png16, ct_image *out) {
    memset(out, 0, sizeof *out);
    tiff_source src = {.bytes = bytes, .size = size, .pos = 0};
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (opts == NULL) return ct_error(CT_ENOMEM, "%s: cannot create a libtiff reader", name);
    TIFFOpenOptionsSetErrorHandlerExtR(opts, error_cb, &src);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, warning_cb, &src);
    /* "m": no memory mapping, every read goes through read_cb. */
    TIFF *tif = TIFFClientOpenExt(name, "rm", &src, read_cb, write_cb, seek_cb, close_cb, size_cb,
                                  NULL, NULL, opts);
    TIFFOpenOptionsFree(opts);
    if (tif == NULL)
        return ct_error(CT_EFORMAT, "%s: corrupt or truncated TIFF: %s", name,
                        src.message[0] ? src.message : "cannot read the header");
    tiff_layout l = {0};
    TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &l.w);
    TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &l.h);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &l.spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &l.bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &l.planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_INKSET, &l.inkset);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &l.photometric))
        l.photometric = l.spp >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;
    ct_status s = ct_data_check_pixels(name, l.w, l.h, max_pixels);
    if (s == CT_OK) {
        int c = 0;
        s = direct_channels(tif, &l, &c) ? read_direct(tif, &l, c, png16, name, &src, out)
                                         : read_rgba(tif, &l, name, &src, out);
    }
    TIFFClose(tif);
    if (s != CT_OK) return s;
    out->h = (int)l.h;
    out->w = (int)l.w;
    return CT_OK;
}
