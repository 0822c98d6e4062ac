/* The CPU backend in a build without oneDNN 2.x (CMakeLists.txt): no oneDNN context, so every
 * convolution and max pooling runs the reference kernels (conv.c, pool.c), which compute the
 * same values one image at a time. The oneDNN ops are never called then (c->dnnl is NULL); they
 * are defined so that the backend links, and say why if reached. */
#include "cpu.h"

ct_status ct_dnnl_init(struct ct_dnnl **out) {
    *out = NULL;
    return CT_OK;
}

void ct_dnnl_free(struct ct_dnnl *d) { (void)d; }

size_t ct_dnnl_bytes(const struct ct_dnnl *d) {
    (void)d;
    return 0;
}

static ct_status absent(void) {
    return ct_error(CT_EINVAL, "this cutune was built without oneDNN 2.x: the CPU backend has "
                    "no oneDNN kernels");
}

ct_status ct_cpu_dnnl_conv_forward(ct_cpu_ctx *c, const ct_conv_args *a) {
    (void)c, (void)a;
    return absent();
}

ct_status ct_cpu_dnnl_conv_backward(ct_cpu_ctx *c, const ct_conv_args *a, bool need_dgrad,
                                    bool need_wgrad) {
    (void)c, (void)a, (void)need_dgrad, (void)need_wgrad;
    return absent();
}

ct_status ct_cpu_dnnl_maxpool_backward(ct_cpu_ctx *c, float *dx, const float *dy, const float *x,
                                       int n, int h, int w, int ch) {
    (void)c, (void)dx, (void)dy, (void)x, (void)n, (void)h, (void)w, (void)ch;
    return absent();
}
