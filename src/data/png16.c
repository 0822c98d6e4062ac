/* The once-per-run note on 16-bit grey PNGs. Keras reads them as PIL's mode I;16 and its
 * convert('RGB') clips every value above 255, which turns most of a 16-bit scan white; cutune
 * does the same by default for parity (decode_png.c), so a run says how many of its files that
 * touched and which flag keeps their range. The count reads 33 bytes of each file (signature and
 * IHDR) when the data are opened, before any fold or epoch, so the note is printed by whoever
 * opens the data, once, and never from the decoding threads. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Whether the file starts as a PNG whose IHDR says 16-bit grey (colour type 0). */
static bool is_png16_grey(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    uint8_t b[26];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t r = read(fd, b + got, sizeof b - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return got == sizeof b && memcmp(b, sig, 8) == 0 && memcmp(b + 12, "IHDR", 4) == 0 &&
           b[24] == 16 && b[25] == 0;
}

size_t ct_dataset_png16_count(const ct_dataset *ds) {
    if (ds == NULL || ct_dataset_in_memory(ds, NULL, NULL, NULL)) return 0;
    size_t n = 0;
    for (size_t i = 0; i < ct_dataset_count(ds); i++)
        if (is_png16_grey(ct_dataset_path(ds, i))) n++;
    return n;
}

void ct_png16_note(size_t n, ct_png16 png16, const char *what) {
    if (n == 0 || png16 != CT_PNG16_CLIP) return;
    fprintf(stderr,
            "cutune: note: %zu image(s) in %s are 16-bit grey PNGs; as in Keras (Pillow's "
            "convert('RGB')), every value above 255 is clipped to 255. Add --png16 scale to "
            "map 0..65535 onto 0..255 and keep their range instead.\n",
            n, what);
}
