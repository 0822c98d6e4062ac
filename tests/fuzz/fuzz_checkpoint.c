/* libFuzzer harness for checkpoints (src/io/checkpoint.c), what `cutune train --resume` reads.
 *
 * Each input is written to a file in a private temporary folder and loaded with
 * ct_checkpoint_load into a small model made once (fuzz_util.c: VGG16 at 64x64 with the mri
 * head, backbone frozen, SGD with momentum), the model make_corpus.py trains with `cutune
 * train` for the seed checkpoint, so that a seed gets past the checks of model and optimizer
 * into the staging of the optimizer state and the all-or-nothing weight load. Failures are
 * expected; crashes, leaks and sanitizer reports are not. As in fuzz_weights.c, an input that
 * cutune's own child-process probe would refuse (libhdf5 crashing or hanging on it) is skipped
 * (CUTUNE_FUZZ_H5_GUARD=0: it is not).
 *
 * Build: as in fuzz_image.c, target fuzz_checkpoint.
 * Run:   mkdir -p build-fuzz/corpus/checkpoint && LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp \
 *            build-fuzz/tests/fuzz/fuzz_checkpoint -timeout=60 -rss_limit_mb=4096 \
 *            -max_total_time=300 build-fuzz/corpus/checkpoint build-fuzz/seeds/checkpoint */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/weights.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_h5_setup();
    return 0;
}

/* Where reads go, so that they are not optimised away. */
volatile size_t sink;

static void run(const char *path) {
    ct_checkpoint_state st;
    if (ct_checkpoint_load(fuzz_small_model(), path, &st) == CT_OK) {
        /* The strings of a loaded state are terminated: read them as resume compares them. */
        sink = strlen(st.monitor) + (st.config != NULL ? strlen(st.config) : 0);
        ct_checkpoint_state_free(&st);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_h5_input(data, size, run);
    return 0;
}
