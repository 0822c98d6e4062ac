/* The op interface.
 *
 * Layers know shapes and names; backends know memory and arithmetic. A backend is a table of
 * function pointers plus a private context (ggml's iface + context). Every pointer an op takes
 * is backend memory (host memory for "cpu", device memory for "cuda"). Arguments go outputs
 * first, then inputs, then sizes (llm.c). Tensors are NHWC; convolution kernels are (K, 3, 3, C)
 * (cuDNN's KRSC for NHWC filters), dense kernels are (in, out) as in Keras.
 *
 * The CPU backend implements every op forward and backward; it is the numerical oracle for the
 * CUDA backend and the fallback that trains where no GPU is present. */
#ifndef CUTUNE_CORE_BACKEND_H
#define CUTUNE_CORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "cutune/cuda.h"
#include "cutune/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 3x3, stride 1, 'same' (zero padding 1) cross-correlation + bias, then ReLU when `relu`.
 *
 * The activations x, y and their gradients dy, dx are of type `act`; the kernel, the bias and
 * their gradients are float32 whatever `act` is. With CT_BF16 the backend multiplies bf16 values
 * (x and the kernel rounded to bf16) with float32 accumulation and rounds twice, as cuDNN's bf16
 * convolutions do: the convolution's sum to bf16, then bias + ReLU to bf16. Backward computes
 * dx in bf16 and dw as a bf16-rounded value stored in float32; db is summed in float32. */
typedef struct ct_conv_args {
    int n, h, w, c, k;
    ct_dtype act;     /* element type of x, y, dy, dx (CT_F32 unless set) */
    const void *x;    /* (n, h, w, c) input */
    const float *wt;  /* (k, 3, 3, c) kernel */
    const float *b;   /* (k) bias */
    void *y;          /* (n, h, w, k) output after the activation */
    /* backward only: */
    void *dy;         /* (n, h, w, k) dL/dy; overwritten with dL/d(pre-activation) */
    void *dx;         /* (n, h, w, c) dL/dx, written when need_dgrad */
    float *dw;        /* (k, 3, 3, c) dL/dw, written (not accumulated) when need_wgrad */
    float *db;        /* (k) dL/db, written when need_wgrad */
    bool relu;
} ct_conv_args;

/* y = act(x · w + b) for x (n, in), w (in, out); act is identity or ReLU. */
typedef struct ct_dense_args {
    int n, in, out;
    const float *x;  /* (n, in) */
    const float *wt; /* (in, out) */
    const float *b;  /* (out) */
    float *y;        /* (n, out) */
    float *dy;       /* (n, out), overwritten with dL/d(pre-activation) when relu */
    float *dx;       /* (n, in) */
    float *dw;       /* (in, out) */
    float *db;       /* (out) */
    bool relu;
} ct_dense_args;

typedef enum { CT_GLOBAL_AVG, CT_GLOBAL_MAX } ct_global_pool;

typedef enum {
    CT_LOSS_BINARY_CE,      /* sigmoid + binary cross-entropy from logits (n, 1) */
    CT_LOSS_CATEGORICAL_CE  /* softmax + categorical cross-entropy from logits (n, k) */
} ct_loss_kind;

/* Which dropout stream a layer draws from: see CT_RNG_DROPOUT in rng.h. */
typedef struct ct_dropout_key {
    uint64_t seed;
    uint32_t layer;
    uint32_t step;
    uint32_t row0; /* row r draws as row row0 + r (its place in a data-parallel global batch) */
} ct_dropout_key;

/* The configurations the augment_standardize op takes (augment.h and data.h). */
struct ct_augment_config;
struct ct_standardize;

/* Hyper-parameters of one optimizer step, resolved by the optimizer (decay, bias correction). */
typedef struct ct_update_args {
    float lr;          /* effective learning rate of this step */
    float momentum;    /* SGD */
    bool nesterov;     /* SGD */
    float beta1, beta2, eps; /* Adam */
    float weight_decay; /* decoupled (AdamW) decay, times lr */
    float l2;          /* L2 penalty l2 * sum(p^2) (Keras's kernel_regularizer): g += 2 l2 p */
} ct_update_args;

/* One tensor of a fused optimizer step (update_multi). */
typedef struct ct_update_tensor {
    float *p;        /* parameters */
    float *s0, *s1;  /* SGD: velocity (NULL without momentum), unused; Adam: m, v */
    const float *g;  /* gradient */
    size_t count;
    float lr_mult;   /* this tensor's multiple of u->lr and u->weight_decay */
    bool l2;         /* whether u->l2 applies (Keras regularises kernels, not biases) */
} ct_update_tensor;

/* The arithmetic ops every backend implements, in table order: X(name, (parameters)), each
 * returning ct_status. A backend declares its functions from this list (ct_cpu_<name>,
 * ct_cu_<name>) and fills its table from it; a new op (a fused kind's kernel) is a row here
 * and a function in each backend. */
#define CT_BACKEND_MATH_OPS(X)                                                                    \
    /* convolution */                                                                             \
    X(conv3x3_forward, (void *ctx, const ct_conv_args *a))                                        \
    X(conv3x3_backward, (void *ctx, const ct_conv_args *a, bool need_dgrad, bool need_wgrad))     \
    /* 2x2 stride-2 max pool, 'valid': (n, h, w, c) -> (n, h/2, w/2, c), odd sizes floor; all     \
     * four tensors of type `dt` (exact in either: outputs are copies of inputs) */               \
    X(maxpool_forward, (void *ctx, ct_dtype dt, void *y, const void *x, int n, int h, int w,      \
      int c))                                                                                     \
    X(maxpool_backward, (void *ctx, ct_dtype dt, void *dx, const void *dy, const void *x,         \
      const void *y, int n, int h, int w, int c))                                                 \
    /* global average / max pool: (n, h, w, c) -> (n, c) */                                       \
    X(global_pool_forward, (void *ctx, ct_global_pool kind, float *y, const float *x, int n,      \
      int h, int w, int c))                                                                       \
    X(global_pool_backward, (void *ctx, ct_global_pool kind, float *dx, const float *dy,          \
      const float *x, const float *y, int n, int h, int w, int c))                                \
    /* dense */                                                                                   \
    X(dense_forward, (void *ctx, const ct_dense_args *a))                                         \
    X(dense_backward, (void *ctx, const ct_dense_args *a, bool need_dgrad, bool need_wgrad))      \
    /* inverted dropout over (n, dim): kept with p = 1 - rate, scaled by 1 / (1 - rate) */        \
    X(dropout_forward, (void *ctx, float *y, const float *x, int n, int dim, float rate,          \
      ct_dropout_key key))                                                                        \
    X(dropout_backward, (void *ctx, float *dx, const float *dy, int n, int dim, float rate,       \
      ct_dropout_key key))                                                                        \
    /* concatenate along features: y (n, da + db) = [a (n, da), b (n, db)] */                     \
    X(concat_forward, (void *ctx, float *y, const float *a, const float *b, int n, int da,        \
      int db))                                                                                    \
    /* dA or dB may be NULL when that side needs no gradient */                                   \
    X(concat_backward, (void *ctx, float *da, float *db, const float *dy, int n, int da_dim,      \
      int db_dim))                                                                                \
    /* Loss from logits, averaged over the batch with optional per-sample weights (NULL: 1).      \
     * Writes the mean loss to *loss (backend memory, one float), the probabilities (n, k) and    \
     * dL/dlogits (n, k). labels: (n, 1) of 0/1 for binary, (n, k) one-hot or soft for            \
     * categorical. */                                                                            \
    X(loss_forward_backward, (void *ctx, ct_loss_kind kind, float *loss, float *probs,            \
      float *dlogits, const float *logits, const float *labels, const float *weights, int n,      \
      int k))                                                                                     \
    /* Optimizer updates over `count` parameters. */                                              \
    X(sgd_update, (void *ctx, float *p, float *velocity, const float *g, size_t count,            \
      const ct_update_args *u))                                                                   \
    X(adam_update, (void *ctx, float *p, float *m, float *v, const float *g, size_t count,        \
      const ct_update_args *u))                                                                   \
    /* The optimizer step over every trainable tensor at once (one launch on CUDA): for each      \
     * t[i], exactly what sgd_update (adam false) or adam_update does with lr and weight_decay    \
     * times lr_mult and l2 only where t[i].l2. */                                                \
    X(update_multi, (void *ctx, bool adam, const ct_update_tensor *t, int n,                      \
      const ct_update_args *u))                                                                   \
    /* Whether all `count` floats are finite, to host memory: detects NaN/Inf in losses and       \
     * gradients within one step. */                                                              \
    X(check_finite, (void *ctx, bool *finite, const float *x, size_t count))                      \
    /* dst (count of dst_type) = src (count of src_type): float32 <-> bf16 (round to nearest      \
     * even), or a copy when the types are equal. */                                              \
    X(cast, (void *ctx, void *dst, ct_dtype dst_type, const void *src, ct_dtype src_type,         \
      size_t count))                                                                              \
    /* The training stream's per-sample work on raw batches (the loader's CT_OUTPUT_RAW): pixels  \
     * to float, ImageDataGenerator augmentation when `aug` is not NULL and enabled (parameters   \
     * drawn for (seed, epoch, sample_index[i]) as ct_augment_draw does), then the                \
     * standardisation `std` (preprocess_input, rescale, samplewise, featurewise). Each image is  \
     * what ct_augment_standardize_image (data.h) makes of it: the CPU backend calls exactly that; \
     * the CUDA backend computes the same float operations in a kernel.                           \
     *   out          (n, h, w, c) float, backend memory; must not overlap the input              \
     *   in_u8        (n, h, w, c) uint8, backend memory, or NULL when in_f32 is given            \
     *   in_f32       (n, h, w, c) float, backend memory (in-memory datasets), or NULL            \
     *   sample_index (n) dataset indices of the rows (ct_batch.index), backend memory            \
     *   aug, std     host memory; aug may be NULL (no augmentation)                              \
     * CT_EINVAL for bad sizes or settings (1 to 4 channels; caffe and torch need 3). */          \
    X(augment_standardize, (void *ctx, float *out, const uint8_t *in_u8, const float *in_f32,     \
      const uint32_t *sample_index, int n, int h, int w, int c,                                   \
      const struct ct_augment_config *aug, const struct ct_standardize *std, uint64_t seed,       \
      uint32_t epoch))                                                                            \
    /* Mirrors (n, h, w, c) float images in place, for test-time augmentation: left-right when    \
     * `horizontal`, top-bottom when `vertical` (both: a half turn). Pixels move whole; values    \
     * are not touched, so every backend gives the same bits. */                                  \
    X(flip, (void *ctx, float *x, int n, int h, int w, int c, bool horizontal, bool vertical))

typedef struct ct_backend_ops {
    const char *name; /* "cpu", "cuda" */
    void (*free)(void *ctx);
    /* The arithmetic of convolutions and GEMMs: "fp32", "tf32" or "bf16" (ct_backend_open). */
    const char *(*precision)(void *ctx);

    /* memory */
    ct_status (*alloc)(void *ctx, void **out, size_t bytes); /* zero-filled */
    void (*release)(void *ctx, void *p);
    ct_status (*copy_to_device)(void *ctx, void *dst, const void *src, size_t bytes);
    ct_status (*copy_to_host)(void *ctx, void *dst, const void *src, size_t bytes);
    ct_status (*synchronize)(void *ctx);

    /* the arithmetic: one member per row of CT_BACKEND_MATH_OPS (above) */
#define CT_BACKEND_MEMBER(name, params) ct_status(*name) params;
    CT_BACKEND_MATH_OPS(CT_BACKEND_MEMBER)
#undef CT_BACKEND_MEMBER

    /* ---- streaming inputs (double buffering) ----
     * Host memory the backend can copy from asynchronously: pinned (page-locked) memory on CUDA,
     * plain memory on the CPU. Loaders fill their batch buffers here. */
    ct_status (*host_alloc)(void *ctx, void **out, size_t bytes);
    void (*host_release)(void *ctx, void *p);
    /* Staging slots (0 .. CT_STAGE_SLOTS-1) let the copy of the next batch run while the current
     * one is computed. A slot's cycle:
     *   stage_copy     queues a host-to-backend copy into the slot's buffers on the copy
     *                  stream, after the compute stream's last stage_release of the slot (so the
     *                  ops that read the previous contents are done); returns at once;
     *   stage_acquire  makes the ops queued after it wait for the slot's copies;
     *   stage_release  marks, in the compute stream's order, that the slot's buffers are read;
     *   stage_sync     waits on the host until the slot's copies are done, so the host source
     *                  may be reused.
     * The CPU backend copies at once and the rest are no-ops. Device buffers of a slot must not
     * be written by anything but stage_copy while the slot is in use. */
    ct_status (*stage_copy)(void *ctx, int slot, void *dst, const void *src, size_t bytes);
    ct_status (*stage_acquire)(void *ctx, int slot);
    ct_status (*stage_release)(void *ctx, int slot);
    ct_status (*stage_sync)(void *ctx, int slot);

    /* ---- profiling ----
     * mark records "now" in the order of the backend's work (a CUDA event on the compute stream;
     * the clock on the CPU, whose ops are synchronous) under `index` (0 .. CT_MARKS-1);
     * elapsed_ms waits until both marks are reached and returns the milliseconds between them. */
    ct_status (*mark)(void *ctx, int index);
    ct_status (*elapsed_ms)(void *ctx, int from, int to, float *ms);
} ct_backend_ops;

#define CT_STAGE_SLOTS 2
#define CT_MARKS 256

typedef struct ct_backend {
    const ct_backend_ops *ops;
    void *ctx;
} ct_backend;

/* The CPU backend (OpenBLAS + OpenMP). `threads` <= 0 keeps the libraries' defaults. */
ct_status ct_backend_cpu_init(ct_backend *be, int threads);
/* The CPU backend at precision "fp32" (as ct_backend_cpu_init) or "bf16": bf16 emulated, for
 * checking. Models then store backbone activations in bf16 and conv ops round exactly where the
 * CUDA backend's bf16 convolutions round, with float32 arithmetic between: the numbers a bf16
 * run on a GPU gets, up to summation order, more slowly than fp32. */
ct_status ct_backend_cpu_open(ct_backend *be, int threads, const char *precision);

/* How a backend computes: what a run asks for, beside what the environment says (core/knobs.h:
 * CUTUNE_PRECISION and CUTUNE_DETERMINISTIC apply where these are unset). A zeroed struct asks
 * for the defaults. */
typedef struct ct_backend_options {
    const char *precision; /* "fp32", "tf32", "bf16"; NULL: CUTUNE_PRECISION or the default */
    bool deterministic;    /* CUDA: deterministic cuDNN algorithms only, none chosen by timing */
    int threads;           /* CPU: OpenMP and OpenBLAS threads; 0 keeps the libraries' defaults */
    int device;            /* CUDA: the device ordinal (a data-parallel rank's local rank); 0 */
} ct_backend_options;

void ct_backend_options_defaults(ct_backend_options *o);

/* The CUDA backend on device `device` (cuDNN + cuBLAS). CT_ENODEV with a message saying why
 * when no usable device is present or cutune was built without CUDA. _init takes the defaults
 * (options NULL). */
ct_status ct_backend_cuda_open(ct_backend *be, int device, const ct_backend_options *o);
ct_status ct_backend_cuda_init(ct_backend *be, int device);

/* Picks a backend by name: "cpu", "cuda" or "auto" (CUDA when usable, else the CPU, saying so
 * through `note` when not NULL). */
ct_status ct_backend_init_by_name(ct_backend *be, const char *name, char *note, size_t note_len);

/* ct_backend_init_by_name with a precision policy: NULL (the backend's default: tf32 on CUDA,
 * fp32 on the CPU), "fp32", "tf32" or "bf16". bf16 is mixed precision: the backbone's
 * activations and their gradients are stored in bf16 and its convolutions run on bf16 tensor
 * cores with float32 accumulation, while weights, weight gradients, optimizer state and the head
 * stay float32 (CUDA on compute capability 8.0+). The CPU computes in fp32, or emulates bf16
 * when asked by name ("cpu", "bf16"); tf32 with "cpu" is CT_EINVAL; when "auto" falls back to
 * the CPU, it computes in fp32 and `note` says the request does not apply. */
ct_status ct_backend_open(ct_backend *be, const char *name, const char *precision, char *note,
                          size_t note_len);

/* ct_backend_open with every option: "cpu", "cuda" or "auto" (NULL is "auto"). */
ct_status ct_backend_open_with(ct_backend *be, const char *name, const ct_backend_options *o,
                               char *note, size_t note_len);

/* The arithmetic the backend uses for convolutions and GEMMs: "fp32", "tf32" or "bf16". */
const char *ct_backend_precision(const ct_backend *be);

/* Writes a backend's note (ct_backend_open's `note`: why "auto" runs on the CPU, ...) to
 * stderr as "<who>: <note>", once per process for the same note: `train --folds 5 --test`
 * opens a backend for every fold and for the test predictions, and one sentence said six
 * times reads as six problems. Empty or NULL notes are not written. Thread-safe. */
void ct_backend_say_note(const char *who, const char *note);

/* The device a CUDA backend runs on (no other device is touched). CT_EINVAL when `be` is not a
 * CUDA backend; CT_ENODEV without CUDA support. */
ct_status ct_cuda_backend_device(const ct_backend *be, ct_device_info *info);

/* Frees the context. A zeroed backend is a no-op. */
void ct_backend_free(ct_backend *be);

#ifdef __cplusplus
}
#endif
#endif
