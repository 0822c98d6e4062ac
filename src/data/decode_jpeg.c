/* JPEG decoding through libjpeg-turbo, from memory, to 8-bit grey or RGB.
 *
 * libjpeg's default error handler calls exit(); ours records the message and longjmps back to
 * ct_data_decode_jpeg instead. Decoder settings are libjpeg's defaults, which are PIL's (islow
 * IDCT, fancy upsampling), so pixels match PIL's for the same library version. A warning that the
 * data ended early (JWRN_JPEG_EOF) is an error here, as PIL raises "image file is truncated";
 * other warnings (extraneous bytes, ...) are ignored, as PIL ignores them. CMYK and YCCK files
 * come out of libjpeg as CMYK and are converted to RGB the way PIL does: PIL assumes Adobe's
 * inverted CMYK and computes R = K' - K'(255 - C')/255 with its rounding (primes: stored bytes). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "internal.h"

typedef struct jpeg_errors {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX + 64];
} jpeg_errors;

static void error_exit(j_common_ptr cinfo) {
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void emit_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return; /* trace messages */
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_errors *e = (jpeg_errors *)cinfo->err;
        snprintf(e->message, sizeof e->message, "file truncated (premature end of JPEG data)");
        longjmp(e->jump, 1);
    }
    cinfo->err->num_warnings++;
}

static void output_message(j_common_ptr cinfo) { (void)cinfo; }

ct_status ct_data_decode_jpeg(const uint8_t *bytes, size_t size, const char *name,
                              uint64_t max_pixels, ct_image *out) {
    memset(out, 0, sizeof *out);
    struct jpeg_decompress_struct cinfo;
    jpeg_errors err;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = error_exit;
    err.pub.emit_message = emit_message;
    err.pub.output_message = output_message;
    /* Written after setjmp and read after longjmp: volatile. */
    uint8_t *volatile pixels = NULL;
    volatile bool created = false;
    if (setjmp(err.jump)) {
        if (created) jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return ct_error(CT_EFORMAT, "%s: corrupt or truncated JPEG: %s", name, err.message);
    }
    jpeg_create_decompress(&cinfo);
    created = true;
    jpeg_mem_src(&cinfo, bytes, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    ct_status s = ct_data_check_pixels(name, cinfo.image_width, cinfo.image_height, max_pixels);
    if (s != CT_OK) {
        jpeg_destroy_decompress(&cinfo);
        return s;
    }
    const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    if (cinfo.jpeg_color_space == JCS_GRAYSCALE)
        cinfo.out_color_space = JCS_GRAYSCALE;
    else if (cmyk)
        cinfo.out_color_space = JCS_CMYK;
    else
        cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    const int nc = cinfo.output_components;
    const int c = cmyk ? 3 : nc;
    /* A CMYK row is decoded into the tail of its slot and converted forward in place. */
    const size_t row_in = (size_t)w * nc, row_out = (size_t)w * c;
    pixels = malloc((size_t)h * row_out + (cmyk ? row_in : 0));
    if (pixels == NULL) {
        jpeg_destroy_decompress(&cinfo);
        return ct_error(CT_ENOMEM, "%s: cannot allocate %dx%d pixels", name, w, h);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        const size_t y = cinfo.output_scanline;
        uint8_t *dst = pixels + y * row_out;
        JSAMPROW row = cmyk ? (JSAMPROW)(pixels + (size_t)h * row_out) : (JSAMPROW)dst;
        jpeg_read_scanlines(&cinfo, &row, 1);
        if (cmyk) {
            for (int x = 0; x < w; x++) {
                const uint8_t *k4 = row + (size_t)x * 4;
                /* PIL: CMYK;I inverts the stored bytes, then cmyk2rgb with nk = 255 - K. */
                const uint32_t nk = k4[3];
                for (int ch = 0; ch < 3; ch++) {
                    int v = (int)nk - (int)ct_data_muldiv255(255u - k4[ch], nk);
                    dst[(size_t)x * 3 + ch] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
                }
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    out->data = pixels;
    out->h = h;
    out->w = w;
    out->c = c;
    return CT_OK;
}
