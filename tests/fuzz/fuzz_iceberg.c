/* libFuzzer harness for Statoil/C-CORE iceberg JSON files (src/data/iceberg.c).
 *
 * Each input is written to a file in a private temporary folder (ct_dataset_open_iceberg maps
 * a path; on /dev/shm that is a memory copy) and opened as `cutune train --data train.json`
 * opens it, with an "na" angle policy chosen by the input's length (mean, median, ffill, a
 * value, error). An opened dataset is read back as the loader reads it: every record's label,
 * id, angle and first and last pixel, and a validation split. Failures are expected; crashes,
 * leaks and sanitizer reports are not.
 *
 * Build: as in fuzz_image.c, target fuzz_iceberg.
 * Run:   mkdir -p build-fuzz/corpus/iceberg && build-fuzz/tests/fuzz/fuzz_iceberg \
 *            -max_total_time=60 build-fuzz/corpus/iceberg build-fuzz/seeds/iceberg */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "fuzz_util.h"

/* Where reads go, so that they are not optimised away. */
volatile double sink;

static void touch(const ct_dataset *ds) {
    const size_t n = ct_dataset_count(ds);
    int h = 0, w = 0, c = 0;
    if (n == 0 || !ct_dataset_in_memory(ds, &h, &w, &c) || h != 75 || w != 75 || c != 3) abort();
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        const int y = ct_dataset_label(ds, i);
        const char *id = ct_dataset_name(ds, i);
        const float *aux = ct_dataset_aux(ds, i), *px = ct_dataset_pixels(ds, i);
        if (id == NULL || aux == NULL || px == NULL || y < -1 || y > 1) abort();
        sum += strlen(id) + (double)aux[0] + px[0] + px[75 * 75 * 3 - 1];
    }
    sink = sum + (double)ct_dataset_na_count(ds);
    ct_dataset *train = NULL, *val = NULL;
    if (ct_dataset_split(ds, 0.5, CT_SPLIT_STRATIFIED, 1, &train, &val) == CT_OK) {
        if (ct_dataset_count(train) + ct_dataset_count(val) != n) abort();
    }
    ct_dataset_free(train);
    ct_dataset_free(val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_input(data, size, ".json");
    ct_iceberg_options o = {.na_policy = (ct_na_policy)(size % (CT_NA_ERROR + 1)),
                            .na_value = 39.25f,
                            .role = CT_ROLE_TRAINING};
    ct_dataset *ds = NULL;
    if (ct_dataset_open_iceberg(&ds, path, &o) == CT_OK) touch(ds);
    ct_dataset_free(ds);
    return 0;
}
