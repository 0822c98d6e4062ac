/* The CPU backend's oneDNN context (onednn.h): engine, stream, primitive cache, scratchpad.
 *
 * The cache is a fixed array searched linearly: VGG19 has 16 convolutions and 5 pools, each with
 * up to three primitives per batch size, and a run sees two or three batch sizes (the training
 * batch, a smaller last batch, the evaluation batch), so 160 entries hold a run's shapes and a
 * lookup costs nothing beside a convolution. */
#include "onednn.h"

#include <stdlib.h>
#include <string.h>

#define CT_DNNL_ENTRIES 160

struct ct_dnnl {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    ct_dnnl_entry entries[CT_DNNL_ENTRIES];
    uint64_t clock;          /* lookups so far */
    void *scratch;           /* the shared scratchpad */
    size_t scratch_bytes;
    void *reorder;           /* the shared buffer of the primitives' own layouts */
    size_t reorder_bytes;
    void *extra;             /* the shared extra scratch (ct_dnnl_extra) */
    size_t extra_bytes;
};

ct_status ct_dnnl_fail(dnnl_status_t st, const char *expr, const char *func, const char *file,
                       int line) {
    const ct_status s = st == dnnl_out_of_memory ? CT_ENOMEM
                        : st == dnnl_unimplemented ? CT_EUNSUPPORTED
                                                   : CT_EINVAL;
    return ct_error(s, "oneDNN: %s failed (status %d) in %s (%s:%d)", expr, (int)st, func, file,
                    line);
}

static void entry_clear(ct_dnnl_entry *e) {
    for (int i = 0; i < e->nargs; i++) {
        ct_dnnl_arg *a = &e->a[i];
        if (a->reorder != NULL) dnnl_primitive_destroy(a->reorder);
        if (a->inner != NULL) dnnl_memory_destroy(a->inner);
        if (a->user != NULL) dnnl_memory_destroy(a->user);
    }
    if (e->scratch != NULL) dnnl_memory_destroy(e->scratch);
    if (e->prim != NULL) dnnl_primitive_destroy(e->prim);
    memset(e, 0, sizeof *e);
}

ct_status ct_dnnl_init(ct_dnnl **out) {
    *out = NULL;
    ct_dnnl *d = calloc(1, sizeof *d);
    if (d == NULL) return ct_error(CT_ENOMEM, "cannot allocate the oneDNN context");
    dnnl_status_t st = dnnl_engine_create(&d->engine, dnnl_cpu, 0);
    if (st != dnnl_success) goto fail_engine;
    st = dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags);
    if (st != dnnl_success) goto fail_stream;
    *out = d;
    return CT_OK;

fail_stream:
    dnnl_engine_destroy(d->engine);
fail_engine:
    free(d);
    return ct_dnnl_fail(st, "creating the CPU engine and stream", __func__, __FILE__, __LINE__);
}

void ct_dnnl_free(ct_dnnl *d) {
    if (d == NULL) return;
    for (int i = 0; i < CT_DNNL_ENTRIES; i++) entry_clear(&d->entries[i]);
    dnnl_stream_destroy(d->stream);
    dnnl_engine_destroy(d->engine);
    free(d->scratch);
    free(d->reorder);
    free(d->extra);
    free(d);
}

static bool key_equal(const ct_dnnl_key *a, const ct_dnnl_key *b) {
    return a->op == b->op && a->n == b->n && a->h == b->h && a->w == b->w && a->c == b->c &&
           a->k == b->k;
}

ct_dnnl_entry *ct_dnnl_lookup(ct_dnnl *d, const ct_dnnl_key *key, bool *fresh) {
    ct_dnnl_entry *victim = &d->entries[0];
    d->clock++;
    for (int i = 0; i < CT_DNNL_ENTRIES; i++) {
        ct_dnnl_entry *e = &d->entries[i];
        if (e->used && key_equal(&e->key, key)) {
            e->last_use = d->clock;
            *fresh = false;
            return e;
        }
        if (!e->used ? victim->used : (victim->used && e->last_use < victim->last_use))
            victim = e;
    }
    entry_clear(victim);
    victim->key = *key;
    victim->last_use = d->clock;
    *fresh = true;
    return victim;
}

/* Grows a grow-only buffer to `bytes` (64-byte aligned, oneDNN's preference). */
static ct_status grow(void **buf, size_t *have, size_t bytes, const char *what) {
    if (bytes <= *have) return CT_OK;
    size_t rounded = (bytes + 255) / 256 * 256;
    void *p = aligned_alloc(64, rounded);
    if (p == NULL) return ct_error(CT_ENOMEM, "cannot grow the oneDNN %s to %zu bytes", what,
                                   rounded);
    free(*buf);
    *buf = p;
    *have = rounded;
    return CT_OK;
}

/* An argument's memory objects and, when the primitive's layout `md` differs from cutune's,
 * the reorder between them, with the copy placed at *offset of the reorder buffer. */
static ct_status arg_make(ct_dnnl *d, ct_dnnl_arg *a, const ct_dnnl_argdesc *ad,
                          const dnnl_memory_desc_t *md, size_t *offset) {
    const dnnl_memory_desc_t *user = ad->user != NULL ? ad->user : md;
    a->arg = ad->arg;
    a->output = ad->output;
    CT_DNNL_CHECK(dnnl_memory_create(&a->user, user, d->engine, DNNL_MEMORY_NONE));
    if (dnnl_memory_desc_equal(user, md)) return CT_OK;
    CT_DNNL_CHECK(dnnl_memory_create(&a->inner, md, d->engine, DNNL_MEMORY_NONE));
    dnnl_primitive_desc_t rpd = NULL;
    CT_DNNL_CHECK(a->output
                      ? dnnl_reorder_primitive_desc_create(&rpd, md, d->engine, user, d->engine,
                                                           NULL)
                      : dnnl_reorder_primitive_desc_create(&rpd, user, d->engine, md, d->engine,
                                                           NULL));
    dnnl_status_t st = dnnl_primitive_create(&a->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    CT_DNNL_CHECK(st);
    a->offset = *offset;
    *offset += (dnnl_memory_desc_get_size(md) + 63) / 64 * 64;
    return CT_OK;
}

/* The memory objects of a made entry; the primitive descriptor stays the caller's. */
static ct_status entry_memories(ct_dnnl *d, ct_dnnl_entry *e, const_dnnl_primitive_desc_t pd,
                                const ct_dnnl_argdesc *args, int nargs) {
    size_t offset = 0;
    for (int i = 0; i < nargs; i++) {
        const dnnl_memory_desc_t *md =
            dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, args[i].arg);
        if (md == NULL)
            return ct_error(CT_EINVAL, "oneDNN: the primitive takes no argument %d", args[i].arg);
        e->nargs = i + 1;
        ct_status s = arg_make(d, &e->a[i], &args[i], md, &offset);
        if (s != CT_OK) return s;
    }
    e->reorder_bytes = offset;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch_bytes = smd != NULL ? dnnl_memory_desc_get_size(smd) : 0;
    if (e->scratch_bytes > 0)
        CT_DNNL_CHECK(dnnl_memory_create(&e->scratch, smd, d->engine, DNNL_MEMORY_NONE));
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_workspace_md, 0);
    e->extra_bytes = wmd != NULL ? dnnl_memory_desc_get_size(wmd) : 0;
    CT_DNNL_CHECK(dnnl_primitive_create(&e->prim, pd));
    return CT_OK;
}

ct_status ct_dnnl_entry_make(ct_dnnl *d, ct_dnnl_entry *e, dnnl_primitive_desc_t pd,
                             const ct_dnnl_argdesc *args, int nargs) {
    if (nargs > CT_DNNL_MAX_ARGS) {
        dnnl_primitive_desc_destroy(pd);
        return ct_error(CT_EINVAL, "oneDNN: %d arguments, at most %d", nargs, CT_DNNL_MAX_ARGS);
    }
    const ct_dnnl_key key = e->key;
    ct_status s = entry_memories(d, e, pd, args, nargs);
    dnnl_primitive_desc_destroy(pd);
    if (s != CT_OK) {
        entry_clear(e);
        return s;
    }
    e->used = true;
    e->key = key;
    return CT_OK;
}

/* Runs an argument's reorder, when it has one, in its direction. */
static ct_status reorder(ct_dnnl *d, const ct_dnnl_arg *a) {
    if (a->reorder == NULL) return CT_OK;
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, a->output ? a->inner : a->user},
                            {DNNL_ARG_TO, a->output ? a->user : a->inner}};
    CT_DNNL_CHECK(dnnl_primitive_execute(a->reorder, d->stream, 2, r));
    return CT_OK;
}

ct_status ct_dnnl_run(ct_dnnl *d, ct_dnnl_entry *e, void *const *buffers) {
    dnnl_exec_arg_t exec[CT_DNNL_MAX_ARGS + 1];
    ct_status s = grow(&d->reorder, &d->reorder_bytes, e->reorder_bytes, "reorder buffer");
    if (s == CT_OK && e->scratch != NULL)
        s = grow(&d->scratch, &d->scratch_bytes, e->scratch_bytes, "scratchpad");
    if (s != CT_OK) return s;
    int n = 0;
    for (int i = 0; i < e->nargs; i++, n++) {
        ct_dnnl_arg *a = &e->a[i];
        CT_DNNL_CHECK(dnnl_memory_set_data_handle(a->user, buffers[i]));
        if (a->inner != NULL)
            CT_DNNL_CHECK(dnnl_memory_set_data_handle(a->inner, (char *)d->reorder + a->offset));
        if (!a->output && (s = reorder(d, a)) != CT_OK) return s;
        exec[n].arg = a->arg;
        exec[n].memory = a->inner != NULL ? a->inner : a->user;
    }
    if (e->scratch != NULL) {
        CT_DNNL_CHECK(dnnl_memory_set_data_handle(e->scratch, d->scratch));
        exec[n].arg = DNNL_ARG_SCRATCHPAD;
        exec[n++].memory = e->scratch;
    }
    CT_DNNL_CHECK(dnnl_primitive_execute(e->prim, d->stream, n, exec));
    for (int i = 0; i < e->nargs; i++)
        if (e->a[i].output && (s = reorder(d, &e->a[i])) != CT_OK) return s;
    CT_DNNL_CHECK(dnnl_stream_wait(d->stream));
    return CT_OK;
}

ct_status ct_dnnl_extra(ct_dnnl *d, size_t bytes, void **out) {
    ct_status s = grow(&d->extra, &d->extra_bytes, bytes, "pooling workspace");
    *out = d->extra;
    return s;
}

dnnl_engine_t ct_dnnl_engine(const ct_dnnl *d) { return d->engine; }

size_t ct_dnnl_bytes(const ct_dnnl *d) {
    return d == NULL ? 0 : d->scratch_bytes + d->reorder_bytes + d->extra_bytes;
}

ct_status ct_dnnl_md_nhwc(dnnl_memory_desc_t *md, int n, int h, int w, int c) {
    const dnnl_dims_t dims = {n, c, h, w};
    CT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_nhwc));
    return CT_OK;
}

ct_status ct_dnnl_md_ohwi(dnnl_memory_desc_t *md, int k, int c) {
    const dnnl_dims_t dims = {k, c, 3, 3};
    CT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_ohwi));
    return CT_OK;
}

ct_status ct_dnnl_md_any_ohwi(dnnl_memory_desc_t *md, int k, int c) {
    const dnnl_dims_t dims = {k, c, 3, 3};
    CT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_format_tag_any));
    return CT_OK;
}

ct_status ct_dnnl_md_vec(dnnl_memory_desc_t *md, int k) {
    const dnnl_dims_t dims = {k};
    CT_DNNL_CHECK(dnnl_memory_desc_init_by_tag(md, 1, dims, dnnl_f32, dnnl_a));
    return CT_OK;
}

ct_status ct_dnnl_attr(dnnl_primitive_attr_t *attr) {
    CT_DNNL_CHECK(dnnl_primitive_attr_create(attr));
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (st != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
        return ct_dnnl_fail(st, "setting the user scratchpad", __func__, __FILE__, __LINE__);
    }
    return CT_OK;
}

ct_status ct_dnnl_backward_pd(ct_dnnl *d, const void *fwd, const void *bwd,
                              dnnl_primitive_desc_t *pd) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t hint = NULL;
    *pd = NULL;
    ct_status s = ct_dnnl_attr(&attr);
    if (s != CT_OK) return s;
    dnnl_status_t st = dnnl_primitive_desc_create(&hint, fwd, NULL, ct_dnnl_engine(d), NULL);
    if (st == dnnl_success)
        st = dnnl_primitive_desc_create(pd, bwd, attr, ct_dnnl_engine(d), hint);
    if (hint != NULL) dnnl_primitive_desc_destroy(hint);
    dnnl_primitive_attr_destroy(attr);
    CT_DNNL_CHECK(st);
    return CT_OK;
}
