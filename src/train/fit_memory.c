/* Out of device memory: the largest batch that fits. The model's memory plan depends only on its
 * layers, the trainable flags and the activations' type, so it is read off a model built on the
 * CPU backend at two batch sizes; their difference is the cost of a sample, and the device's
 * free memory (after this run's own memory is released) says how many samples fit. */
#include <stdio.h>
#include <string.h>

#include "cutune/cuda.h"
#include "fit.h"

/* Bytes the model's arenas (parameters, gradients, optimizer slots, activations) and the
 * streaming buffers need at batch `n`, with the trainable flags the run ends with. The plan
 * depends only on the layers, the flags and the activations' type (bf16 at bf16 precision), not
 * on the backend, so it is read off a model built on the CPU backend at that precision. */
static ct_status planned_bytes(const fit_run *r, int n, bool on_device, size_t *bytes) {
    ct_backend cpu;
    const bool bf16 = strcmp(ct_backend_precision(&r->be), "bf16") == 0;
    /* 0 threads: leaves the thread settings alone */
    ct_status s = ct_backend_cpu_open(&cpu, 0, bf16 ? "bf16" : "fp32");
    if (s != CT_OK) return s;
    ct_model_config mc = {.backbone = r->c->backbone,
                          .input_h = r->input,
                          .input_w = r->input,
                          .input_c = 3,
                          .aux_dim = ct_dataset_aux_dim(r->train),
                          .max_batch = n,
                          .head = r->head,
                          .seed = r->c->seed,
                          .freeze_to = r->freeze_target};
    ct_model *m = NULL;
    s = ct_model_init(&m, &mc, &cpu);
    if (s == CT_OK) s = ct_model_compile(m, &r->c->optimizer);
    if (s == CT_OK) {
        ct_model_memory mem;
        ct_model_memory_get(m, &mem);
        /* The staging slots of the training stream and of the validation stream, as
         * stream.c allocates them: raw uint8 pixels and the sample indices on the device path
         * (floats for in-memory data), finished floats on the loader path. */
        int h, w, ch;
        const bool f32 = ct_dataset_in_memory(r->train, &h, &w, &ch);
        const size_t px = (size_t)r->input * r->input * 3 *
                          (on_device && !f32 ? 1 : sizeof(float));
        const size_t per = px + (on_device ? sizeof(uint32_t) : 0) +
                           (size_t)mc.aux_dim * sizeof(float);
        const size_t streams = r->val != NULL ? 2 : 1;
        *bytes = mem.params + mem.grads + mem.optimizer + mem.activations +
                 streams * CT_STAGE_SLOTS * n * per;
        /* At fp32 the CUDA backend may run a convolution through NCHW copies of its input and
         * output (cuda/conv.cu, "Layout route"): two more of the widest activation, block1's. */
        if (strcmp(ct_backend_precision(&r->be), "fp32") == 0 && r->be.ops != NULL &&
            strcmp(r->be.ops->name, "cuda") == 0)
            *bytes += 2 * (size_t)n * r->input * r->input * 64 * sizeof(float);
    }
    ct_model_free(m);
    ct_backend_free(&cpu);
    return s;
}

long ct_train_cudnn_batch_cap(int input) {
    if (input <= 0) return 0;
    /* The widest activation of VGG16 is block1's: input x input x 64 per sample. */
    const size_t per = (size_t)input * (size_t)input * 64;
    return (long)((((size_t)1 << 31) - 1) / per);
}

int ct_train_largest_batch(size_t fixed, size_t per_sample, size_t available) {
    if (per_sample == 0 || available <= fixed) return 0;
    /* cuDNN's workspace and the libraries' pools grow with the batch too; keep a tenth back. */
    size_t usable = (available - fixed) / 10 * 9;
    size_t n = usable / per_sample;
    return n > 1000000 ? 1000000 : (int)n;
}

/* Appends to an out-of-memory error on the device (CT_EDEVMEM; host allocations, such as the
 * frozen-prefix cache's, fail with CT_ENOMEM and get no batch-size advice) the largest batch
 * that should fit. */
void fit_oom_hint(fit_run *r) {
    if (r->be.ops == NULL || strcmp(r->be.ops->name, "cpu") == 0 || r->input == 0) return;
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", ct_last_error());
    const bool on_device = r->stream != NULL && ct_stream_on_device(r->stream);
    /* What this run holds is released first, so the device's free memory is what a new run with
     * a smaller batch would start from. */
    ct_loader_free(r->tl);
    r->tl = NULL;
    ct_stream_free(r->stream);
    r->stream = NULL;
    ct_loader_free(r->vl);
    r->vl = NULL;
    ct_stream_free(r->vstream);
    r->vstream = NULL;
    ct_model_free(r->m);
    r->m = NULL;
    size_t b1 = 0, b2 = 0, used = 0, total = 0;
    if (planned_bytes(r, 1, on_device, &b1) != CT_OK ||
        planned_bytes(r, 2, on_device, &b2) != CT_OK || b2 <= b1 ||
        ct_cuda_memory_used(0, &used, &total) != CT_OK) {
        ct_error(CT_EDEVMEM, "%s", msg);
        return;
    }
    const size_t per = b2 - b1, fixed = b1 - per;
    int fit = ct_train_largest_batch(fixed, per, total - used);
    /* cuDNN's descriptors take 32-bit sizes: no activation tensor may reach 2^31 elements. */
    const long cap = ct_train_cudnn_batch_cap(r->input);
    const bool capped = cap > 0 && fit > cap;
    if (capped) fit = (int)cap;
    ct_error(CT_EDEVMEM,
             "%s. At %dx%d with these frozen layers the model needs %zu MiB plus %.1f MiB per "
             "sample; with %zu MiB of device memory free, the largest batch that fits is about "
             "%d%s: try --batch-size %d%s",
             msg, r->input, r->input, fixed >> 20, (double)per / (1 << 20), (total - used) >> 20,
             fit, capped ? " (cuDNN's 32-bit tensor sizes allow no more)" : "", fit > 0 ? fit : 1,
             fit > 0 ? "" : " (nothing fits: free device memory, or freeze more layers)");
}

