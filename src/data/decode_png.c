/* PNG decoding through libpng, from memory, to 8-bit grey, grey+alpha, RGB or RGBA.
 *
 * libpng reports errors by calling our error function, which records the message and longjmps
 * back to the setjmp in ct_data_decode_png; nothing here can exit the process. Transforms do the
 * format work: palette to RGB, 1/2/4-bit grey to 8-bit (scaled, as PIL does), tRNS to an alpha
 * channel, 16-bit colour and grey+alpha to 8-bit by keeping the high byte (PIL's modes RGB,
 * RGBA from RGB;16B, RGBA;16B, LA;16B), and interlace handling. Gamma is not applied (PIL
 * ignores gAMA too).
 *
 * 16-bit grey is PIL's mode I;16, which keeps the 16-bit values; Keras's convert('RGB') then
 * clips each at 255. With CT_PNG16_CLIP the samples are read as 16 bits and clipped here, so
 * the pixels are Keras's; CT_PNG16_SCALE asks libpng for png_set_scale_16 (round(v / 257)).
 * The tRNS key of a 16-bit file is dropped: PIL keeps it as a 16-bit value that its
 * convert('RGBA') (Keras's rgba) compares with 8-bit pixels, so it makes nothing transparent
 * (checked against Pillow 13 in tests/test_data_formats.c). */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct png_source {
    const uint8_t *bytes;
    size_t size, pos;
    char message[256];
} png_source;

static void read_cb(png_structp png, png_bytep out, size_t len) {
    png_source *src = png_get_io_ptr(png);
    if (len > src->size - src->pos)
        png_error(png, "file truncated (read past the end of the data)");
    memcpy(out, src->bytes + src->pos, len);
    src->pos += len;
}

static void error_cb(png_structp png, png_const_charp msg) {
    png_source *src = png_get_error_ptr(png);
    snprintf(src->message, sizeof src->message, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (a bad CRC in an ancillary chunk, an unknown chunk) do not change the pixels. */
static void warning_cb(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* Rows of big-endian 16-bit grey, in place, to 8 bits: min(v, 255), as PIL's I;16 -> RGB. */
static void clip_16(uint8_t *pixels, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const unsigned v = (unsigned)pixels[2 * i] << 8 | pixels[2 * i + 1];
        pixels[i] = (uint8_t)(v > 255 ? 255 : v);
    }
}

ct_status ct_data_decode_png(const uint8_t *bytes, size_t size, const char *name,
                             uint64_t max_pixels, ct_png16 png16, ct_image *out) {
    memset(out, 0, sizeof *out);
    /* The size is in IHDR, the first chunk: check it before libpng reads (and allocates for)
     * anything else. */
    if (size >= 24 && memcmp(bytes + 12, "IHDR", 4) == 0) {
        const uint32_t w = (uint32_t)bytes[16] << 24 | (uint32_t)bytes[17] << 16 |
                           (uint32_t)bytes[18] << 8 | bytes[19];
        const uint32_t h = (uint32_t)bytes[20] << 24 | (uint32_t)bytes[21] << 16 |
                           (uint32_t)bytes[22] << 8 | bytes[23];
        ct_status s = ct_data_check_pixels(name, w, h, max_pixels);
        if (s != CT_OK) return s;
    }
    png_source src = {.bytes = bytes, .size = size, .pos = 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, error_cb, warning_cb);
    if (png == NULL) return ct_error(CT_ENOMEM, "%s: cannot create a libpng reader", name);
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        return ct_error(CT_ENOMEM, "%s: cannot create a libpng info struct", name);
    }
    /* Written after setjmp and read after longjmp: volatile. */
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile ct_status status = CT_EFORMAT;
    volatile bool have_message = false; /* set when the message is already recorded */
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(pixels);
        png_destroy_read_struct(&png, &info, NULL);
        if (!have_message)
            return ct_error(CT_EFORMAT, "%s: corrupt or truncated PNG: %s", name, src.message);
        return status;
    }
    png_set_read_fn(png, &src, read_cb);
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    if ((status = ct_data_check_pixels(name, w, h, max_pixels)) != CT_OK) {
        have_message = true; /* keep the guard's message */
        png_longjmp(png, 1);
    }
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    const bool grey16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
    const bool clip = grey16 && png16 == CT_PNG16_CLIP;
    if (png_get_valid(png, info, PNG_INFO_tRNS) && depth != 16) png_set_tRNS_to_alpha(png);
    if (grey16 && png16 == CT_PNG16_SCALE) png_set_scale_16(png);
    else if (depth == 16 && !clip) png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int c = png_get_channels(png, info);
    const size_t rowbytes = png_get_rowbytes(png, info);
    const int bits = clip ? 16 : 8;
    if (c < 1 || c > 4 || png_get_bit_depth(png, info) != bits ||
        rowbytes != (size_t)w * c * (bits / 8)) {
        snprintf(src.message, sizeof src.message,
                 "unexpected layout after conversion (%d channels, %d bits)", c,
                 png_get_bit_depth(png, info));
        png_longjmp(png, 1);
    }
    pixels = malloc((size_t)h * rowbytes);
    rows = malloc((size_t)h * sizeof *rows);
    if (pixels == NULL || rows == NULL) {
        status =
            ct_error(CT_ENOMEM, "%s: cannot allocate %ux%u pixels", name, (unsigned)w, (unsigned)h);
        have_message = true;
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    if (clip) clip_16(pixels, (size_t)w * h); /* rows are contiguous: one pass */
    /* The chunks after the image data are not read: PIL ignores them too, and a file cut after
     * its last IDAT still holds the whole image. */
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->data = pixels;
    out->h = (int)h;
    out->w = (int)w;
    out->c = c;
    return CT_OK;
}
