/* Writing a file so that readers only ever see the old or the complete new version: write to a
 * temporary name in the same directory, flush and fsync, then rename over the final name. */
#ifndef CUTUNE_ATOMIC_H
#define CUTUNE_ATOMIC_H

#include <stdio.h>

#include "cutune/status.h"

typedef struct ct_atomic_file {
    FILE *f;
    char path[4096];
    char tmp[4096 + 32];
} ct_atomic_file;

/* Opens `path`.tmp-<pid> for writing ("w" or "wb"). */
ct_status ct_atomic_open(ct_atomic_file *a, const char *path, const char *mode);
/* Flushes, fsyncs, closes and renames the temporary file over the final name, then fsyncs the
 * directory. On failure the temporary file is removed and the old file is untouched. */
ct_status ct_atomic_commit(ct_atomic_file *a);
/* Closes and removes the temporary file. */
void ct_atomic_abort(ct_atomic_file *a);
/* fsyncs the directory holding `path`, so a rename in it is durable. */
ct_status ct_fsync_dir_of(const char *path);

/* mkdir -p. When `made` is not NULL it receives the shallowest directory this call created
 * ("" when all existed), so that a caller can remove what it made (ct_remove_made_dirs). */
ct_status ct_make_dirs(const char *path, char *made, size_t made_len);
/* Removes `path` and its parents up to and including `made` (as ct_make_dirs reported it),
 * deepest first, stopping at the first that is not empty. */
void ct_remove_made_dirs(const char *path, const char *made);

#endif
