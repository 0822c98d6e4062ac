/* BMP and binary PPM/PGM decoding through stb_image (Debian's libstb), from memory.
 *
 * stb_image is called only for the formats sniffed here as BMP or PNM; PNG and JPEG go to
 * libpng and libjpeg-turbo. Its failure reason is thread-local in Debian's build, and it prints
 * nothing. What PIL and stb_image read alike, and so cutune reads: BMP of 1, 4, 8 (palette),
 * 24 and 32 bits, bottom-up or top-down; PPM (P6) and PGM (P5) with maxval 255 (other
 * maxvals, 16-bit ones included, are refused: PIL rescales them, stb_image does not). A 32-bit BMP
 * without a bit-field alpha mask (BI_RGB) is RGB to PIL, its fourth byte padding, so its alpha
 * is not read. stb_image refuses RLE-compressed BMPs, the text forms of PNM (P1, P2, P3) and
 * 1-bit P4, which PIL reads: those are refused with a message that says to convert them.
 * stb_image reads a truncated file's missing pixels as zeros; PIL raises, and so does this file,
 * from the size the header implies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image.h>

#include "internal.h"

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The numbers of a P5/P6 header (width, height, maxval; '#' starts a comment) and where the
 * samples start (one whitespace byte after maxval); false when it does not parse. */
static bool pnm_header(const uint8_t *b, size_t n, long v[3], size_t *data_at) {
    size_t i = 2;
    for (int field = 0; field < 3; field++) {
        while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n' ||
                         b[i] == '#')) {
            if (b[i] == '#')
                while (i < n && b[i] != '\n') i++;
            else
                i++;
        }
        if (i >= n || b[i] < '0' || b[i] > '9') return false;
        for (v[field] = 0; i < n && b[i] >= '0' && b[i] <= '9' && v[field] < 1000000; i++)
            v[field] = v[field] * 10 + (b[i] - '0');
    }
    *data_at = i + 1;
    return true;
}

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

/* The bytes an uncompressed image needs, from its header (0 when unknown: RLE, JPEG in BMP,
 * an unparsed header; stb_image judges those). stb_image reads past the end of a BMP or PNM as
 * zeros, where PIL raises "image file is truncated"; this is the check PIL makes. */
static uint64_t needed_bytes(const uint8_t *b, size_t n, bool bmp) {
    if (!bmp) {
        long v[3];
        size_t at = 0;
        if (!pnm_header(b, n, v, &at)) return 0;
        return at + (uint64_t)v[0] * (uint64_t)v[1] * (b[1] == '6' ? 3u : 1u);
    }
    if (n < 30) return 0;
    const uint32_t header = le32(b + 14);
    uint64_t w, h, bpp, comp = 0;
    if (header == 12) {
        w = le16(b + 18);
        h = le16(b + 20);
        bpp = le16(b + 24);
    } else {
        if (n < 34) return 0;
        w = (uint64_t)llabs((long long)(int32_t)le32(b + 18));
        h = (uint64_t)llabs((long long)(int32_t)le32(b + 22)); /* negative: top-down */
        bpp = le16(b + 28);
        comp = le32(b + 30);
    }
    if (comp != 0 && comp != 3 && comp != 6) return 0; /* 3, 6: bit fields, uncompressed */
    return le32(b + 10) + (w * bpp + 31) / 32 * 4 * h;
}

/* The channels to ask stb_image for: 0 (the file's own) except for a BI_RGB 32-bit BMP, whose
 * padding byte PIL does not read as alpha (bpp at offset 28, compression at 30). */
static int wanted_channels(const uint8_t *b, size_t n, bool bmp) {
    if (!bmp || n < 34) return 0;
    const unsigned bpp = (unsigned)b[28] | (unsigned)b[29] << 8;
    return bpp == 32 && le32(b + 30) == 0 ? 3 : 0;
}

ct_status ct_data_decode_stb(const uint8_t *bytes, size_t size, const char *name, bool bmp,
                             uint64_t max_pixels, ct_image *out) {
    memset(out, 0, sizeof *out);
    const char *kind = bmp ? "BMP" : "PPM/PGM";
    if (size > (size_t)0x7fffffff)
        return ct_error(CT_EFORMAT, "%s: %s file over 2 GiB", name, kind);
    if (!bmp && size >= 2 && bytes[1] != '5' && bytes[1] != '6')
        return ct_error(CT_EUNSUPPORTED, "%s: unsupported format (P%c netpbm: only binary P5 "
                        "and P6 are read): convert to PNG", name, bytes[1]);
    long pnm[3] = {0, 0, 0};
    size_t at = 0;
    if (!bmp && pnm_header(bytes, size, pnm, &at) && pnm[2] != 255)
        return ct_error(CT_EUNSUPPORTED, "%s: unsupported PPM/PGM (maxval other than 255): "
                        "convert to PNG", name);
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(bytes, (int)size, &w, &h, &comp))
        return ct_error(CT_EFORMAT, "%s: corrupt or unsupported %s: %s", name, kind,
                        stbi_failure_reason());
    ct_status s = ct_data_check_pixels(name, (uint64_t)w, (uint64_t)h, max_pixels);
    if (s != CT_OK) return s;
    const uint64_t need = needed_bytes(bytes, size, bmp);
    if (need > size)
        return ct_error(CT_EFORMAT, "%s: corrupt or truncated %s: file truncated (%zu of %llu "
                        "bytes)", name, kind, size, (unsigned long long)need);
    const int want = wanted_channels(bytes, size, bmp);
    stbi_uc *px = stbi_load_from_memory(bytes, (int)size, &w, &h, &comp, want);
    if (px == NULL)
        return ct_error(CT_EFORMAT, "%s: corrupt or unsupported %s: %s", name, kind,
                        stbi_failure_reason());
    const int c = want != 0 ? want : comp;
    const size_t n = (size_t)w * h * c;
    /* stb_image's buffer is freed with stbi_image_free; ct_image's with free(): copy. */
    uint8_t *pixels = malloc(n);
    if (pixels == NULL) {
        stbi_image_free(px);
        return ct_error(CT_ENOMEM, "%s: cannot allocate %dx%d pixels", name, w, h);
    }
    memcpy(pixels, px, n);
    stbi_image_free(px);
    out->data = pixels;
    out->h = h;
    out->w = w;
    out->c = c;
    return CT_OK;
}
