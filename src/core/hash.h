/* FNV-1a, the 64-bit hash cutune keys small things by: the notes a process has said, the
 * frozen-prefix cache's files, the settings every rank of a data-parallel run must share. Not
 * for anything an adversary chooses. */
#ifndef CUTUNE_CORE_HASH_H
#define CUTUNE_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CT_FNV1A_START 0xcbf29ce484222325ull

/* h extended by n bytes of data: start from CT_FNV1A_START. */
static inline uint64_t ct_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

#endif
