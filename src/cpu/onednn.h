/* The CPU backend's oneDNN context: the engine and stream, a small cache of primitives keyed by
 * op and shape, and the one scratchpad they share.
 *
 * oneDNN runs a whole batch per call in one OpenMP region, where the reference path (conv.c)
 * runs one image at a time with its own regions and OpenBLAS's; on a machine whose cores other
 * work competes for, every barrier of the latter stalls on a thread that lost its core. The
 * descriptors and primitives are made once per shape (STYLE.md rule 6) and kept here; each cache
 * entry also keeps memory objects without buffers, whose handles are set at every call. The
 * scratchpad is the user's (dnnl_scratchpad_mode_user): one grow-only buffer, since the backend
 * runs one op at a time (as its im2col workspace does). */
#ifndef CUTUNE_CPU_ONEDNN_H
#define CUTUNE_CPU_ONEDNN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "cutune/status.h"

/* Checks a oneDNN call, recording the expression, function, file and line in the message. */
ct_status ct_dnnl_fail(dnnl_status_t st, const char *expr, const char *func, const char *file,
                       int line);
#define CT_DNNL_CHECK(expr)                                                                   \
    do {                                                                                      \
        dnnl_status_t ct_dnnl_st_ = (expr);                                                   \
        if (ct_dnnl_st_ != dnnl_success)                                                      \
            return ct_dnnl_fail(ct_dnnl_st_, #expr, __func__, __FILE__, __LINE__);            \
    } while (0)

/* What a primitive computes, with the shape it was made for. */
typedef enum {
    CT_DNNL_CONV_FWD,      /* y = conv(x) + b */
    CT_DNNL_CONV_BWD_DATA, /* dx from dy */
    CT_DNNL_CONV_BWD_WTS,  /* dw, db from x and dy */
    CT_DNNL_POOL_FWD,      /* max pool, training: y and the winners (workspace) */
    CT_DNNL_POOL_BWD       /* dx from dy and the workspace */
} ct_dnnl_op;

typedef struct ct_dnnl_key {
    ct_dnnl_op op;
    int n, h, w, c, k; /* k: output channels (convolutions), 0 for pooling */
} ct_dnnl_key;

#define CT_DNNL_MAX_ARGS 6

/* One argument of a primitive: cutune's buffer in cutune's layout (`user`) and, where the
 * primitive wants another layout (kernels: oneDNN's fast kernels read them blocked), the copy it
 * reads or writes in the shared reorder buffer and the reorder between the two. */
typedef struct ct_dnnl_arg {
    int arg;                  /* DNNL_ARG_* */
    bool output;              /* written by the primitive: reordered back after it */
    dnnl_memory_t user;       /* cutune's layout; handle set at each call */
    dnnl_memory_t inner;      /* the primitive's layout, or NULL when it is cutune's */
    dnnl_primitive_t reorder; /* user -> inner (inputs) or inner -> user (outputs) */
    size_t offset;            /* of `inner` in the reorder buffer */
} ct_dnnl_arg;

/* A cached primitive and the arguments it is executed with, in execution order. */
typedef struct ct_dnnl_entry {
    ct_dnnl_key key;
    bool used;
    uint64_t last_use;            /* the cache's clock when last looked up (least recent goes) */
    dnnl_primitive_t prim;
    int nargs;                    /* not counting the scratchpad */
    ct_dnnl_arg a[CT_DNNL_MAX_ARGS];
    size_t reorder_bytes;         /* of the reorder buffer, all `inner` copies */
    dnnl_memory_t scratch;        /* NULL when the primitive needs none */
    size_t scratch_bytes;
    size_t extra_bytes;           /* what the caller needs beside the scratchpad (pool workspace) */
} ct_dnnl_entry;

typedef struct ct_dnnl ct_dnnl;

/* ct_dnnl_init, ct_dnnl_free and ct_dnnl_bytes: in cpu.h, for the backend. */

/* The entry for `key`. *fresh says it is empty (the least recently used was evicted, or a free
 * slot taken): the caller then makes its primitive with ct_dnnl_entry_make. */
ct_dnnl_entry *ct_dnnl_lookup(ct_dnnl *d, const ct_dnnl_key *key, bool *fresh);

/* What an entry's argument is: its DNNL_ARG_*, whether the primitive writes it, and cutune's
 * layout of it (NULL: whatever the primitive's descriptor says, fixed by the caller). */
typedef struct ct_dnnl_argdesc {
    int arg;
    bool output;
    const dnnl_memory_desc_t *user;
} ct_dnnl_argdesc;

/* Fills an entry from a primitive descriptor: creates the primitive, one buffer-less memory
 * object per argument (and the scratchpad's), and a reorder for each argument whose layout in
 * the primitive differs from cutune's; destroys `pd` whatever happens. On failure the entry is
 * left empty. */
ct_status ct_dnnl_entry_make(ct_dnnl *d, ct_dnnl_entry *e, dnnl_primitive_desc_t pd,
                             const ct_dnnl_argdesc *args, int nargs);

/* Executes an entry on buffers given in the order of its `args`, with the shared scratchpad
 * (grown when needed), and waits for it. */
ct_status ct_dnnl_run(ct_dnnl *d, ct_dnnl_entry *e, void *const *buffers);

/* Bytes of grow-only scratch beside the scratchpad, shared like it: max pooling's workspace of
 * winners, written by the forward and read by the backward of the same call. */
ct_status ct_dnnl_extra(ct_dnnl *d, size_t bytes, void **out);

/* The engine, for making descriptors. */
dnnl_engine_t ct_dnnl_engine(const ct_dnnl *d);


/* Memory descriptors of cutune's layouts: activations (n, h, w, c) as logical (n, c, h, w) in
 * nhwc order; kernels (k, 3, 3, c) as (k, c, 3, 3) in ohwi order; a vector (k). */
ct_status ct_dnnl_md_nhwc(dnnl_memory_desc_t *md, int n, int h, int w, int c);
ct_status ct_dnnl_md_ohwi(dnnl_memory_desc_t *md, int k, int c);
ct_status ct_dnnl_md_vec(dnnl_memory_desc_t *md, int k);
/* A kernel of (k, 3, 3, c) in whatever layout the primitive prefers (format_tag any). */
ct_status ct_dnnl_md_any_ohwi(dnnl_memory_desc_t *md, int k, int c);

/* An attribute with the user scratchpad; free with dnnl_primitive_attr_destroy. */
ct_status ct_dnnl_attr(dnnl_primitive_attr_t *attr);

/* The primitive descriptor of a backward op `bwd` (with the user scratchpad), made with its
 * forward `fwd`'s as the hint oneDNN asks for. */
ct_status ct_dnnl_backward_pd(ct_dnnl *d, const void *fwd, const void *bwd,
                              dnnl_primitive_desc_t *pd);

#endif
