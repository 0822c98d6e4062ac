/* libFuzzer harness for the HDF5 weights reader.
 *
 * Each input is written to a file (the reader, like HDF5's default driver, takes a path; the
 * file lives in /dev/shm when it exists, so this costs a memory copy) and goes through every
 * entry point that parses a file cutune did not write: inspect, a real load of the backbone
 * into a small model (reading and checking array data, which exercises HDF5's chunk decoding
 * and filters), a dry-run load of every layer by name and by order with missing and extra
 * layers allowed, the configuration reader, and the checkpoint reader. Failures are expected;
 * crashes, leaks and sanitizer reports are not.
 *
 * Build (clang): CC=clang cmake -S . -B build-fuzz -DCUTUNE_FUZZ=ON -DCUTUNE_CUDA=OFF
 * Seeds: the weight fixtures, every layout and error case, 2-44 KB each:
 *       mkdir -p seeds corpus && find tests/fixtures -maxdepth 1 -name '*.h5' -exec cp {} seeds \;
 * Run:  LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 \
 *       build-fuzz/tests/fuzz/fuzz_weights -fork=1 -ignore_crashes=1 -ignore_timeouts=1 \
 *           -timeout=10 -max_total_time=300 -rss_limit_mb=4096 corpus seeds
 *
 * Known crashes in HDF5 1.10.8 itself: a corrupted global heap behind a variable-length string
 * attribute makes H5Aread overflow a buffer in H5HG_read, or spin forever in H5HG__protect. The
 * stacks are entirely inside libhdf5 below cutune's H5Aread call (read_one in src/io/h5.c);
 * -fork=1 -ignore_crashes=1 keeps fuzzing past them. hdf5_bugs/ holds one input of each. cutune
 * itself now reads a new file's structure in a child process first (src/io/h5.c), which turns
 * both into error messages (test_weights_cli); the fuzzer turns that guard off to see them. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "model/optim.h"
#include "io/weights.h"

static ct_backend be;
static ct_model *model;
static char path[256];

static void remove_input(void) { unlink(path); }

static void init(void) {
    /* The fuzzer wants libhdf5's crashes in this process, not caught by the child-process guard
     * of src/io/h5.c. */
    setenv("CUTUNE_H5_PROBE", "0", 1);
    if (ct_backend_cpu_init(&be, 1) != CT_OK) abort();
    /* The smallest model: 64x64 with the mri head (the head of most seeds); the backbone is always 14.7M parameters. */
    ct_model_config cfg = {.input_h = 64, .input_w = 64, .input_c = 3, .aux_dim = 0,
                           .max_batch = 1, .head = "mri", .seed = 1};
    if (ct_model_init(&model, &cfg, &be) != CT_OK) abort();
    if (ct_model_freeze_to(model, "block5_pool") != CT_OK) abort();
    ct_optimizer_config o;
    ct_optimizer_defaults(&o, CT_OPT_SGD);
    o.momentum = 0.9f;
    if (ct_model_compile(model, &o) != CT_OK) abort();
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/cutune_fuzz_%d.h5", dir, (int)getpid());
    atexit(remove_input);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (model == NULL) init();
    FILE *f = fopen(path, "wb");
    if (f == NULL) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    fclose(f);

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
    return 0;
}
