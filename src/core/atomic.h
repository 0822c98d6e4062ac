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

/* The folders a ct_make_dirs call created, as the lengths of the prefixes of its path that
 * name them, shallowest first. Only these are ever removed again, so a path through '..' or
 * '.' can never lead to removing a folder that existed before. */
#define CT_MADE_DIRS_MAX 64
typedef struct ct_made_dirs {
    size_t len[CT_MADE_DIRS_MAX];
    int n;
} ct_made_dirs;

/* mkdir -p. `made` (may be NULL) records what this call created; on failure whatever it created
 * is removed again. */
ct_status ct_make_dirs(const char *path, ct_made_dirs *made);
/* Removes the folders `made` records (prefixes of `path`), deepest first, stopping at the
 * first that cannot be removed (not empty). */
void ct_remove_made_dirs(const char *path, const ct_made_dirs *made);

#endif
