/* 3x3 'same' convolutions through oneDNN: forward with the bias fused (the ReLU after it, in one
 * pass that keeps NaN), data gradient, weight and bias gradients, each over the whole batch in
 * one primitive call.
 *
 * Activations stay in cutune's nhwc layout, which oneDNN's AVX2 / AVX-512 kernels take directly.
 * Kernels go to the layout the primitive picks (blocked: with cutune's ohwi fixed, oneDNN 2.6
 * falls back to its reference loops, 100x slower) through a reorder at each call; they are small
 * beside the activations (a 3x3 kernel is read once per batch), and they change at every step.
 * A primitive is made once per shape and kept in the context's cache (onednn.c). Each primitive
 * is deterministic for a fixed thread count, as oneDNN documents for its CPU convolutions, which
 * the resume tests rely on. */
#include "cpu.h"
#include "onednn.h"

/* The forward descriptor of a shape: also the hint the backward descriptors need. */
static ct_status conv_desc(dnnl_convolution_desc_t *cd, const ct_conv_args *a) {
    dnnl_memory_desc_t x, wt, b, y;
    const dnnl_dims_t strides = {1, 1}, pad = {1, 1};
    ct_status s;
    if ((s = ct_dnnl_md_nhwc(&x, a->n, a->h, a->w, a->c)) != CT_OK ||
        (s = ct_dnnl_md_any_ohwi(&wt, a->k, a->c)) != CT_OK ||
        (s = ct_dnnl_md_vec(&b, a->k)) != CT_OK ||
        (s = ct_dnnl_md_nhwc(&y, a->n, a->h, a->w, a->k)) != CT_OK)
        return s;
    CT_DNNL_CHECK(dnnl_convolution_forward_desc_init(cd, dnnl_forward_training,
                                                     dnnl_convolution_direct, &x, &wt, &b, &y,
                                                     strides, pad, pad));
    return CT_OK;
}

static ct_status make_forward(ct_dnnl *d, ct_dnnl_entry *e, const ct_conv_args *a) {
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    ct_status s = conv_desc(&cd, a);
    if (s == CT_OK) s = ct_dnnl_attr(&attr);
    if (s != CT_OK) return s;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &cd, attr, ct_dnnl_engine(d), NULL);
    dnnl_primitive_attr_destroy(attr);
    CT_DNNL_CHECK(st);
    dnnl_memory_desc_t wt;
    if ((s = ct_dnnl_md_ohwi(&wt, a->k, a->c)) != CT_OK) {
        dnnl_primitive_desc_destroy(pd);
        return s;
    }
    const ct_dnnl_argdesc args[] = {{DNNL_ARG_SRC, false, NULL},
                                    {DNNL_ARG_WEIGHTS, false, &wt},
                                    {DNNL_ARG_BIAS, false, NULL},
                                    {DNNL_ARG_DST, true, NULL}};
    return ct_dnnl_entry_make(d, e, pd, args, 4);
}

/* A backward primitive descriptor: `data` picks the data gradient, else the weights'. */
static ct_status make_backward(ct_dnnl *d, ct_dnnl_entry *e, const ct_conv_args *a, bool data) {
    dnnl_convolution_desc_t fd, bd;
    dnnl_memory_desc_t x, any, wt, b, y;
    const dnnl_dims_t strides = {1, 1}, pad = {1, 1};
    ct_status s;
    if ((s = conv_desc(&fd, a)) != CT_OK ||
        (s = ct_dnnl_md_nhwc(&x, a->n, a->h, a->w, a->c)) != CT_OK ||
        (s = ct_dnnl_md_any_ohwi(&any, a->k, a->c)) != CT_OK ||
        (s = ct_dnnl_md_ohwi(&wt, a->k, a->c)) != CT_OK ||
        (s = ct_dnnl_md_vec(&b, a->k)) != CT_OK ||
        (s = ct_dnnl_md_nhwc(&y, a->n, a->h, a->w, a->k)) != CT_OK)
        return s;
    if (data)
        CT_DNNL_CHECK(dnnl_convolution_backward_data_desc_init(
            &bd, dnnl_convolution_direct, &x, &any, &y, strides, pad, pad));
    else
        CT_DNNL_CHECK(dnnl_convolution_backward_weights_desc_init(
            &bd, dnnl_convolution_direct, &x, &any, &b, &y, strides, pad, pad));

    dnnl_primitive_desc_t pd = NULL;
    if ((s = ct_dnnl_backward_pd(d, &fd, &bd, &pd)) != CT_OK) return s;
    const ct_dnnl_argdesc data_args[] = {{DNNL_ARG_DIFF_DST, false, NULL},
                                         {DNNL_ARG_WEIGHTS, false, &wt},
                                         {DNNL_ARG_DIFF_SRC, true, NULL}};
    const ct_dnnl_argdesc wts_args[] = {{DNNL_ARG_SRC, false, NULL},
                                        {DNNL_ARG_DIFF_DST, false, NULL},
                                        {DNNL_ARG_DIFF_WEIGHTS, true, &wt},
                                        {DNNL_ARG_DIFF_BIAS, true, NULL}};
    return data ? ct_dnnl_entry_make(d, e, pd, data_args, 3)
                : ct_dnnl_entry_make(d, e, pd, wts_args, 4);
}

/* The cached primitive of `op` for the shape of `a`, made on first use. */
static ct_status entry_for(ct_cpu_ctx *c, ct_dnnl_op op, const ct_conv_args *a,
                           ct_dnnl_entry **out) {
    const ct_dnnl_key key = {op, a->n, a->h, a->w, a->c, a->k};
    bool fresh = false;
    ct_dnnl_entry *e = ct_dnnl_lookup(c->dnnl, &key, &fresh);
    ct_status s = CT_OK;
    if (fresh)
        s = op == CT_DNNL_CONV_FWD ? make_forward(c->dnnl, e, a)
                                   : make_backward(c->dnnl, e, a, op == CT_DNNL_CONV_BWD_DATA);
    *out = e;
    return s;
}

ct_status ct_cpu_dnnl_conv_forward(ct_cpu_ctx *c, const ct_conv_args *a) {
    ct_dnnl_entry *e = NULL;
    ct_status s = entry_for(c, CT_DNNL_CONV_FWD, a, &e);
    if (s != CT_OK) return s;
    void *const buf[] = {(void *)a->x, (void *)a->wt, (void *)a->b, a->y};
    if ((s = ct_dnnl_run(c->dnnl, e, buf)) != CT_OK || !a->relu) return s;
    /* ReLU as the reference writes it, which keeps NaN (the NaN-loss check relies on it);
     * oneDNN's fused ReLU is max(x, 0), which turns NaN into 0. */
    float *y = a->y;
    const size_t count = (size_t)a->n * a->h * a->w * a->k;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++) y[i] = y[i] < 0.0f ? 0.0f : y[i];
    return CT_OK;
}

ct_status ct_cpu_dnnl_conv_backward(ct_cpu_ctx *c, const ct_conv_args *a, bool need_dgrad,
                                    bool need_wgrad) {
    if (a->relu) ct_cpu_relu_backward_inplace(a->dy, a->y, (size_t)a->n * a->h * a->w * a->k);
    ct_dnnl_entry *e = NULL;
    ct_status s = CT_OK;
    if (need_wgrad && (s = entry_for(c, CT_DNNL_CONV_BWD_WTS, a, &e)) == CT_OK) {
        void *const buf[] = {(void *)a->x, a->dy, a->dw, a->db};
        s = ct_dnnl_run(c->dnnl, e, buf);
    }
    if (s == CT_OK && need_dgrad && (s = entry_for(c, CT_DNNL_CONV_BWD_DATA, a, &e)) == CT_OK) {
        void *const buf[] = {a->dy, (void *)a->wt, a->dx};
        s = ct_dnnl_run(c->dnnl, e, buf);
    }
    return s;
}
