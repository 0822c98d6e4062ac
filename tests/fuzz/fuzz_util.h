/* Pieces the libFuzzer harnesses share: a private temporary folder for inputs that the library
 * reads from a path, the small model the HDF5 harnesses load files into, and the guard that
 * reads an HDF5 input in a child process first, as cutune does, so that the libhdf5 crashes and
 * hangs cutune guards against (tests/fuzz/lsan.supp lists them) are skipped while cutune's own
 * faults are reported. */
#ifndef CUTUNE_FUZZ_UTIL_H
#define CUTUNE_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* Writes the input to a new file in this process's private folder (made on first use in
 * /dev/shm, or $TMPDIR, or /tmp, and removed at exit) and returns its path, valid until the
 * next call, which removes the file. Every call uses a new name: src/io/h5_probe.c remembers the
 * files it has already probed by path and stat, and a reused name written in the same clock
 * tick could pass for the previous input. Aborts when the file cannot be written. */
const char *fuzz_write_input(const uint8_t *data, size_t size, const char *suffix);

/* The model the weights and checkpoint harnesses load into, made once: VGG16 at 64x64 with the
 * mri head (the head of most weight fixtures), the backbone frozen (block5_pool), compiled with
 * SGD and momentum 0.9, on the CPU backend. make_corpus.py trains the same model with `cutune
 * train` for the checkpoint seed. Aborts when it cannot be made. */
ct_model *fuzz_small_model(void);

/* What the HDF5 harnesses do once, from LLVMFuzzerInitialize: turn cutune's own child-process
 * probe off (CUTUNE_H5_PROBE=0; fuzz_h5_input does its reads instead) and make the model. */
void fuzz_h5_setup(void);

/* One input of an HDF5 harness: written to a file, read first as cutune's probe reads it
 * (src/io/h5_probe.c: ct_weights_inspect and ct_weights_read_config) in a forked child, then
 * given to run() unless the child showed it to be one of libhdf5's known failures, and finally
 * checked for HDF5 objects left open (a handle cutune failed to close aborts: LeakSanitizer
 * cannot tell those from libhdf5's own leaks, which lsan.supp suppresses).
 *
 * The input is skipped when the child met a sanitizer report whose innermost frame outside the
 * sanitizer runtime and libc lies in libhdf5 (or a library it decompresses with), as does the
 * allocation of the memory it touched, or was still busy in libhdf5 after 5 s: failures
 * cutune's probe refuses a file for. Otherwise (the child finished, or failed in cutune's code)
 * run() runs here and the fuzzer reports what it finds. CUTUNE_FUZZ_H5_GUARD=0 turns the child
 * off, to see libhdf5's failures here; CUTUNE_FUZZ_H5_SKIPPED=DIR keeps each skipped input and
 * its report in DIR. */
void fuzz_h5_input(const uint8_t *data, size_t size, void (*run)(const char *path));

#endif
