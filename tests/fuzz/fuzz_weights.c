/* libFuzzer harness for the HDF5 weights reader.
 *
 * Each input is written to a file in a private temporary folder (the reader, like HDF5's
 * default driver, takes a path; the folder is on /dev/shm when it exists, so this costs a
 * memory copy) and goes through every entry point that parses a file cutune did not write:
 * inspect, a real load of the backbone into a small model (reading and checking array data,
 * which exercises HDF5's chunk decoding and filters), a dry-run load of every layer by name
 * and by order with missing and extra layers allowed, the configuration reader, and the
 * checkpoint reader. Failures are expected; crashes, leaks and sanitizer reports are not.
 *
 * libhdf5 1.10 crashes or hangs on some damaged files by itself (tests/fuzz/lsan.supp lists
 * them, with reproducers in hdf5_bugs/). cutune guards against that by reading a new file's
 * structure in a child process first (src/io/h5_probe.c); this harness turns that probe off and
 * does the same reads in a child of its own (fuzz_util.c), which tells libhdf5's failures from
 * cutune's under the sanitizers, and skips the inputs cutune's probe would refuse. What fails
 * after that is a finding. CUTUNE_FUZZ_H5_GUARD=0 shows libhdf5's failures instead.
 *
 * Build: as in fuzz_image.c, target fuzz_weights.
 * Seeds: the weight fixtures (every layout and error case, 2-44 KB each) and a cutune-written
 *        model file, from make_corpus.py.
 * Run:   mkdir -p build-fuzz/corpus/weights && LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp \
 *            build-fuzz/tests/fuzz/fuzz_weights -timeout=60 -rss_limit_mb=4096 \
 *            -max_total_time=300 build-fuzz/corpus/weights build-fuzz/seeds/weights */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/weights.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_h5_setup();
    return 0;
}

static void run(const char *path) {
    ct_model *model = fuzz_small_model();
    ct_weights_file *wf = NULL;
    if (ct_weights_inspect(path, &wf) == CT_OK) {
        /* Touch what inspect reported, as `cutune inspect` prints it. */
        size_t n = 0;
        for (int i = 0; i < wf->n_layers; i++)
            for (int k = 0; k < wf->layers[i].n_arrays; k++)
                n += strlen(wf->layers[i].arrays[k].name) + (size_t)wf->layers[i].arrays[k].ndim;
        if (n == (size_t)-1) abort();
    }
    ct_weights_file_free(wf);

    ct_weights_load_opts o;
    ct_weights_load_defaults(&o);
    ct_weights_report rep;
    o.scope = CT_WEIGHTS_SCOPE_BACKBONE;
    (void)ct_weights_load(model, path, &o, &rep);
    o.scope = CT_WEIGHTS_SCOPE_ALL;
    o.allow_missing = o.allow_extra = true;
    o.dry_run = true;
    (void)ct_weights_load(model, path, &o, &rep);
    o.match = CT_WEIGHTS_MATCH_ORDER;
    (void)ct_weights_load(model, path, &o, &rep);

    ct_model_config cfg = {0};
    ct_saved_config extra;
    if (ct_weights_read_config(path, &cfg, &extra) == CT_OK) ct_saved_config_free(&extra);

    ct_checkpoint_state st;
    if (ct_checkpoint_load(model, path, &st) == CT_OK) ct_checkpoint_state_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_h5_input(data, size, run);
    return 0;
}
