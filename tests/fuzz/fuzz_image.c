/* libFuzzer harness for image files: PNG, JPEG, TIFF, BMP, PPM and the formats cutune refuses.
 *
 * Each input is the bytes of one image file. It goes from memory through what ct_image_load
 * does after reading a file: ct_image_decode_with (signature sniffing, libpng, libjpeg-turbo,
 * libtiff or stb_image, conversion to the colour mode), then, when the target size differs,
 * Keras's keep_aspect_ratio crop box and ct_image_resize. The colour mode, 16-bit grey mode
 * (clip or scale), interpolation, crop and a small target size (1-48 pixels a side) come from a
 * hash of the input, so every mutation also tries another combination. The decompression-bomb
 * guard is lowered to 64 Kpx (256x256) to keep runs short; the guard itself is what is
 * exercised, not the default's size. Nothing is written to disk.
 *
 * Build (clang): CC=clang cmake -S . -B build-fuzz -DCUTUNE_FUZZ=ON -DCUTUNE_CUDA=OFF \
 *                    -DCUTUNE_TESTS=OFF -DCUTUNE_BENCH=OFF
 *                cmake --build build-fuzz --target fuzz_image cutune_cli
 * Seeds: python3 tests/fuzz/make_corpus.py --cutune build-fuzz/cutune --out build-fuzz/seeds
 * Run:   mkdir -p build-fuzz/corpus/image && build-fuzz/tests/fuzz/fuzz_image -max_total_time=60 \
 *            build-fuzz/corpus/image build-fuzz/seeds/image
 * (scripts/sanitize-and-fuzz.sh does all of this for every harness.) */
#include <stdint.h>
#include <stdlib.h>

#include "data/data.h"

/* FNV-1a: a cheap hash that every byte of the input changes. */
static uint64_t hash(const uint8_t *data, size_t size) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint64_t h = hash(data, size);
    static const ct_color_mode modes[3] = {CT_COLOR_RGB, CT_COLOR_GRAYSCALE, CT_COLOR_RGBA};
    const ct_color_mode mode = modes[h % 3];
    const ct_interpolation interp = (ct_interpolation)((h >> 8) % (CT_INTERP_HAMMING + 1));
    const int target_h = 1 + (int)((h >> 16) % 48), target_w = 1 + (int)((h >> 24) % 48);
    const bool keep_aspect = (h >> 32) & 1;

    ct_image_options o;
    ct_image_options_defaults(&o);
    o.color_mode = mode;
    o.max_pixels = (uint64_t)1 << 16;
    o.png16 = (h >> 40) & 1 ? CT_PNG16_SCALE : CT_PNG16_CLIP;
    ct_image img;
    if (ct_image_decode_with(data, size, "fuzz", &o, &img) != CT_OK) return 0;
    if (img.h <= 0 || img.w <= 0 || img.c != ct_color_mode_channels(mode) || img.data == NULL)
        abort(); /* a decoded image always has pixels in the requested layout */
    if (img.h != target_h || img.w != target_w) {
        float box[4];
        if (keep_aspect) ct_image_crop_box(img.h, img.w, target_h, target_w, box);
        ct_image out;
        if (ct_image_resize(&img, target_h, target_w, interp, keep_aspect ? box : NULL, &out) ==
            CT_OK) {
            if (out.h != target_h || out.w != target_w || out.c != img.c) abort();
            ct_image_free(&out);
        }
    }
    ct_image_free(&img);
    return 0;
}
