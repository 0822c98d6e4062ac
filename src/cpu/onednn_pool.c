/* The backward of 2x2 stride-2 max pooling through oneDNN, whole batch per call (the forward
 * stays in pool.c, which says why).
 *
 * The op table's backward gets the pool's input and output but no record of the winners, and
 * oneDNN's max-pool backward needs one (its workspace). So the backward first runs the training
 * forward again into scratch, which writes the output (discarded) and the winners, then the
 * backward from them: one cheap memory-bound pass more, in place of the reference's
 * comparisons. Windows are 'valid' with odd sizes floored: (h - 2) / 2 + 1 == h / 2 rows with
 * no padding, which oneDNN accepts as is. */
#include "cpu.h"
#include "onednn.h"

/* The training forward's descriptor: its workspace records the winners. */
static ct_status pool_desc(dnnl_pooling_desc_t *pd, int n, int h, int w, int c) {
    dnnl_memory_desc_t x, y;
    const dnnl_dims_t strides = {2, 2}, kernel = {2, 2}, pad = {0, 0};
    ct_status s;
    if ((s = ct_dnnl_md_nhwc(&x, n, h, w, c)) != CT_OK ||
        (s = ct_dnnl_md_nhwc(&y, n, h / 2, w / 2, c)) != CT_OK)
        return s;
    CT_DNNL_CHECK(dnnl_pooling_forward_desc_init(pd, dnnl_forward_training, dnnl_pooling_max, &x,
                                                 &y, strides, kernel, pad, pad));
    return CT_OK;
}

static ct_status make_forward(ct_dnnl *d, ct_dnnl_entry *e) {
    const ct_dnnl_key *k = &e->key;
    dnnl_pooling_desc_t fd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    ct_status s = pool_desc(&fd, k->n, k->h, k->w, k->c);
    if (s == CT_OK) s = ct_dnnl_attr(&attr);
    if (s != CT_OK) return s;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &fd, attr, ct_dnnl_engine(d), NULL);
    dnnl_primitive_attr_destroy(attr);
    CT_DNNL_CHECK(st);
    static const ct_dnnl_argdesc args[] = {{DNNL_ARG_SRC, false, NULL},
                                           {DNNL_ARG_DST, true, NULL},
                                           {DNNL_ARG_WORKSPACE, true, NULL}};
    return ct_dnnl_entry_make(d, e, pd, args, 3);
}

static ct_status make_backward(ct_dnnl *d, ct_dnnl_entry *e) {
    const ct_dnnl_key *k = &e->key;
    dnnl_pooling_desc_t fd, bd;
    dnnl_memory_desc_t dx, dy;
    const dnnl_dims_t strides = {2, 2}, kernel = {2, 2}, pad = {0, 0};
    ct_status s;
    if ((s = pool_desc(&fd, k->n, k->h, k->w, k->c)) != CT_OK ||
        (s = ct_dnnl_md_nhwc(&dx, k->n, k->h, k->w, k->c)) != CT_OK ||
        (s = ct_dnnl_md_nhwc(&dy, k->n, k->h / 2, k->w / 2, k->c)) != CT_OK)
        return s;
    CT_DNNL_CHECK(dnnl_pooling_backward_desc_init(&bd, dnnl_pooling_max, &dx, &dy, strides,
                                                  kernel, pad, pad));
    dnnl_primitive_desc_t pd = NULL;
    if ((s = ct_dnnl_backward_pd(d, &fd, &bd, &pd)) != CT_OK) return s;
    static const ct_dnnl_argdesc args[] = {{DNNL_ARG_DIFF_DST, false, NULL},
                                           {DNNL_ARG_WORKSPACE, false, NULL},
                                           {DNNL_ARG_DIFF_SRC, true, NULL}};
    return ct_dnnl_entry_make(d, e, pd, args, 3);
}

/* The cached primitive of `op` for the shape, made on first use. */
static ct_status entry_for(ct_cpu_ctx *c, ct_dnnl_op op, int n, int h, int w, int ch,
                           ct_dnnl_entry **out) {
    const ct_dnnl_key key = {op, n, h, w, ch, 0};
    bool fresh = false;
    ct_dnnl_entry *e = ct_dnnl_lookup(c->dnnl, &key, &fresh);
    ct_status s = CT_OK;
    if (fresh) s = op == CT_DNNL_POOL_BWD ? make_backward(c->dnnl, e) : make_forward(c->dnnl, e);
    *out = e;
    return s;
}

ct_status ct_cpu_dnnl_maxpool_backward(ct_cpu_ctx *c, float *dx, const float *dy, const float *x,
                                       int n, int h, int w, int ch) {
    ct_dnnl_entry *fwd = NULL, *bwd = NULL;
    ct_status s = entry_for(c, CT_DNNL_POOL_FWD, n, h, w, ch, &fwd);
    if (s == CT_OK) s = entry_for(c, CT_DNNL_POOL_BWD, n, h, w, ch, &bwd);
    if (s != CT_OK) return s;
    float *y = NULL;
    void *winners = NULL;
    if ((s = ct_cpu_workspace(c, (size_t)n * (h / 2) * (w / 2) * ch, &y)) != CT_OK ||
        (s = ct_dnnl_extra(c->dnnl, fwd->extra_bytes, &winners)) != CT_OK)
        return s;
    void *const fbuf[] = {(void *)x, y, winners};
    if ((s = ct_dnnl_run(c->dnnl, fwd, fbuf)) != CT_OK) return s;
    void *const bbuf[] = {(void *)dy, winners, dx};
    return ct_dnnl_run(c->dnnl, bwd, bbuf);
}
