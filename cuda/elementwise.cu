/* Memory-bound kernels of the CUDA backend: bias + ReLU epilogues, the ReLU gradient mask and
 * the bias gradient shared by conv and dense, dropout, concatenation, the finite check and the
 * flips of test-time augmentation.
 *
 * All of them are one pass over their data with grid-stride loops, using float4 accesses where
 * the channel count and the pointers allow, and 32-bit index arithmetic where the element count
 * allows (a VGG16 activation at batch 64 has 2e8 elements; at batch 512, more than 2^31). Dropout recomputes the CPU backend's mask from the same Philox4x32-10
 * counters (rng.h compiles for the device), so the two backends drop the same units bit for
 * bit; one Philox block yields the words of four consecutive units, so each thread handles four.
 * The bias gradient is a two-pass column sum with fixed-order partial sums in the workspace:
 * deterministic, unlike atomics, and it applies the ReLU mask in the same pass over dy. */
#include <stdint.h>

#include "context.h"
#include "data/data.h"
#include "core/rng.h"

#define THREADS 256

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* ---- bias + activation epilogue -------------------------------------------------------- */

/* ReLU as the CPU backend computes it, (v < 0 ? 0 : v): a NaN pre-activation stays NaN, so a
 * diverging step is caught by check_finite instead of being hidden behind zeros. */
__device__ __forceinline__ float relu_fwd(float v) { return v < 0.0f ? 0.0f : v; }

/* I is the index type (see ct_cu_fits_32): the modulo per element is the costliest arithmetic
 * here. */
template <typename I>
__global__ void bias_act_kernel(float *y, const float *b, I count, I cols, bool relu) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        float v = y[i] + b[i % cols];
        y[i] = relu ? relu_fwd(v) : v;
    }
}

/* The same with four channels per access: cols % 4 == 0, so a float4 never straddles rows. */
template <typename I>
__global__ void bias_act_kernel4(float4 *y, const float4 *b, I count4, I cols4, bool relu) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < count4; i += stride) {
        float4 v = y[i];
        float4 c = b[i % cols4];
        v.x += c.x;
        v.y += c.y;
        v.z += c.z;
        v.w += c.w;
        if (relu) {
            v.x = relu_fwd(v.x);
            v.y = relu_fwd(v.y);
            v.z = relu_fwd(v.z);
            v.w = relu_fwd(v.w);
        }
        y[i] = v;
    }
}

ct_status ct_cu_bias_act(ct_cu_ctx *ctx, float *y, const float *b, size_t rows, int cols,
                         bool relu) {
    size_t count = rows * (size_t)cols;
    if (count == 0) return CT_OK;
    bool narrow = ct_cu_fits_32(count);
    if (cols % 4 == 0 && aligned16(y) && aligned16(b)) {
        size_t count4 = count / 4;
        unsigned grid = ct_cu_grid(ctx, count4, THREADS);
        if (narrow) {
            bias_act_kernel4<uint32_t><<<grid, THREADS, 0, ctx->stream>>>(
                (float4 *)y, (const float4 *)b, (uint32_t)count4, (uint32_t)cols / 4, relu);
        } else {
            bias_act_kernel4<size_t><<<grid, THREADS, 0, ctx->stream>>>(
                (float4 *)y, (const float4 *)b, count4, (size_t)cols / 4, relu);
        }
    } else {
        unsigned grid = ct_cu_grid(ctx, count, THREADS);
        if (narrow) {
            bias_act_kernel<uint32_t><<<grid, THREADS, 0, ctx->stream>>>(y, b, (uint32_t)count,
                                                                        (uint32_t)cols, relu);
        } else {
            bias_act_kernel<size_t><<<grid, THREADS, 0, ctx->stream>>>(y, b, count,
                                                                      (size_t)cols, relu);
        }
    }
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

/* ---- ReLU gradient mask ---------------------------------------------------------------- */

/* dy *= (y > 0), written as the CPU backend writes it, a select: where the output was not
 * positive the gradient becomes exactly 0, whatever dy held there. */
__host__ __device__ __forceinline__ float relu_grad(float g, float y) {
    return y > 0.0f ? g : 0.0f;
}

template <typename T>
__global__ void relu_mask_kernel(T *dy, const T *y, size_t count) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        if (!(ct_cu_ld(&y[i]) > 0.0f)) ct_cu_st(&dy[i], 0.0f);
    }
}

__global__ void relu_mask_kernel4(float4 *dy, const float4 *y, size_t count4) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count4; i += stride) {
        float4 g = dy[i], v = y[i];
        g.x = relu_grad(g.x, v.x);
        g.y = relu_grad(g.y, v.y);
        g.z = relu_grad(g.z, v.z);
        g.w = relu_grad(g.w, v.w);
        dy[i] = g;
    }
}

ct_status ct_cu_relu_mask(ct_cu_ctx *ctx, ct_dtype dt, void *dy, const void *y,
                          size_t count) {
    if (count == 0) return CT_OK;
    if (dt == CT_BF16) {
        relu_mask_kernel<__nv_bfloat16><<<ct_cu_grid(ctx, count, THREADS), THREADS, 0,
                                          ctx->stream>>>(
            (__nv_bfloat16 *)dy, (const __nv_bfloat16 *)y, count);
    } else if (count % 4 == 0 && aligned16(dy) && aligned16(y)) {
        size_t count4 = count / 4;
        relu_mask_kernel4<<<ct_cu_grid(ctx, count4, THREADS), THREADS, 0, ctx->stream>>>(
            (float4 *)dy, (const float4 *)y, count4);
    } else {
        relu_mask_kernel<float><<<ct_cu_grid(ctx, count, THREADS), THREADS, 0, ctx->stream>>>(
            (float *)dy, (const float *)y, count);
    }
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

/* ---- bias gradient: column sums, optionally masked -------------------------------------- */

#define BG_COLS 32 /* one warp across 32 consecutive channels: coalesced rows */
#define BG_ROWS 8  /* warps per block, each on its own rows of the chunk */

/* partial[chunk, col] = sum of dy[row, col] over the rows of `chunk` in float32; with y, dy is
 * masked by (y > 0) and written back first (exact in bf16 too: kept or zeroed). Grid:
 * (ceil(cols / 32), chunks). */
template <typename T>
__global__ void bias_grad_partial_kernel(float *partial, T *dy, const T *y, size_t rows,
                                         int cols, size_t rows_per_chunk) {
    __shared__ float sums[BG_ROWS][BG_COLS + 1]; /* +1: no bank conflicts on the column read */
    int col = blockIdx.x * BG_COLS + threadIdx.x;
    size_t r0 = (size_t)blockIdx.y * rows_per_chunk;
    size_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float acc = 0.0f;
    if (col < cols) {
        for (size_t r = r0 + threadIdx.y; r < r1; r += BG_ROWS) {
            size_t i = r * (size_t)cols + col;
            float g = ct_cu_ld(&dy[i]);
            if (y && !(ct_cu_ld(&y[i]) > 0.0f)) {
                g = 0.0f;
                ct_cu_st(&dy[i], 0.0f);
            }
            acc += g;
        }
    }
    sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        float t = 0.0f;
        for (int j = 0; j < BG_ROWS; j++) t += sums[j][threadIdx.x];
        partial[(size_t)blockIdx.y * cols + col] = t;
    }
}

/* db[col] = sum over chunks of partial[chunk, col], in chunk order. */
__global__ void bias_grad_final_kernel(float *db, const float *partial, int chunks, int cols) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    float t = 0.0f;
    for (int j = 0; j < chunks; j++) t += partial[(size_t)j * cols + col];
    db[col] = t;
}

ct_status ct_cu_bias_grad(ct_cu_ctx *ctx, ct_dtype dt, float *db, void *dy, const void *y,
                          size_t rows, int cols) {
    if (cols <= 0) return CT_OK;
    if (rows == 0) {
        CT_CU_CHECK(cudaMemsetAsync(db, 0, (size_t)cols * sizeof(float), ctx->stream));
        return CT_OK;
    }
    /* Enough chunks to give every SM several blocks, each chunk at least 32 rows so the
     * partial sums stay a small fraction of the traffic. */
    unsigned blocks_x = (unsigned)((cols + BG_COLS - 1) / BG_COLS);
    size_t want = ((size_t)ctx->sm_count * 8 + blocks_x - 1) / blocks_x;
    size_t max_by_rows = (rows + 31) / 32;
    size_t chunks = want < max_by_rows ? want : max_by_rows;
    if (chunks < 1) chunks = 1;
    if (chunks > 65535) chunks = 65535; /* the grid's y limit */
    size_t rows_per_chunk = (rows + chunks - 1) / chunks;
    chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;

    void *ws = NULL;
    ct_status st = ct_cu_workspace(ctx, chunks * (size_t)cols * sizeof(float), &ws);
    if (st != CT_OK) return st;
    float *partial = (float *)ws;

    dim3 grid(blocks_x, (unsigned)chunks);
    dim3 block(BG_COLS, BG_ROWS);
    if (dt == CT_BF16)
        bias_grad_partial_kernel<__nv_bfloat16><<<grid, block, 0, ctx->stream>>>(
            partial, (__nv_bfloat16 *)dy, (const __nv_bfloat16 *)y, rows, cols, rows_per_chunk);
    else
        bias_grad_partial_kernel<float><<<grid, block, 0, ctx->stream>>>(
            partial, (float *)dy, (const float *)y, rows, cols, rows_per_chunk);
    CT_CU_CHECK_LAUNCH();
    bias_grad_final_kernel<<<(cols + THREADS - 1) / THREADS, THREADS, 0, ctx->stream>>>(
        db, partial, (int)chunks, cols);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

/* ---- dropout --------------------------------------------------------------------------- */

/* Inverted dropout over (n, dim): unit (r, j) is kept iff ct_rng_unit(word) >= rate, where word
 * is ct_rng_word(seed, purpose, step, row0 + r, j) = Philox(j / 4, row0 + r, step,
 * purpose).v[j % 4] (row0: the batch's place in a data-parallel global batch). Thread t
 * handles units 4q .. 4q + 3 of row r (t = r * quads + q) from one Philox block. The same
 * kernel serves backward: dy in place of x gives dx. */
__global__ void dropout_kernel(float *y, const float *x, int n, int dim, float rate, float scale,
                               uint32_t seed_lo, uint32_t seed_hi, uint32_t purpose,
                               uint32_t step, uint32_t row0) {
    size_t quads = ((size_t)dim + 3) / 4;
    size_t total = (size_t)n * quads;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        uint32_t r = (uint32_t)(t / quads), q = (uint32_t)(t % quads);
        ct_philox_out o = ct_philox4x32_10(q, row0 + r, step, purpose, seed_lo, seed_hi);
        size_t row = (size_t)r * dim;
        for (int l = 0; l < 4; l++) {
            size_t j = (size_t)q * 4 + l;
            if (j >= (size_t)dim) break;
            bool keep = ct_rng_unit(o.v[l]) >= rate;
            y[row + j] = keep ? x[row + j] * scale : 0.0f;
        }
    }
}

/* dim % 4 == 0: the four units of thread t are float4 number t of the whole array. */
__global__ void dropout_kernel4(float4 *y, const float4 *x, int n, int dim, float rate,
                                float scale, uint32_t seed_lo, uint32_t seed_hi,
                                uint32_t purpose, uint32_t step, uint32_t row0) {
    size_t quads = (size_t)dim / 4;
    size_t total = (size_t)n * quads;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        uint32_t r = (uint32_t)(t / quads), q = (uint32_t)(t % quads);
        ct_philox_out o = ct_philox4x32_10(q, row0 + r, step, purpose, seed_lo, seed_hi);
        float4 v = x[t];
        v.x = ct_rng_unit(o.v[0]) >= rate ? v.x * scale : 0.0f;
        v.y = ct_rng_unit(o.v[1]) >= rate ? v.y * scale : 0.0f;
        v.z = ct_rng_unit(o.v[2]) >= rate ? v.z * scale : 0.0f;
        v.w = ct_rng_unit(o.v[3]) >= rate ? v.w * scale : 0.0f;
        y[t] = v;
    }
}

static ct_status dropout_run(ct_cu_ctx *ctx, const char *what, float *y, const float *x, int n,
                             int dim, float rate, ct_dropout_key key) {
    if (n < 0 || dim < 0) return ct_error(CT_EINVAL, "cuda %s: n %d, dim %d", what, n, dim);
    if (!(rate >= 0.0f && rate < 1.0f)) {
        return ct_error(CT_EINVAL, "cuda %s: rate %g is not in [0, 1)", what, (double)rate);
    }
    if (n == 0 || dim == 0) return CT_OK;
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    /* The scale is the float expression the CPU backend evaluates, computed once on the host:
     * x * scale is then one correctly rounded multiply on both sides, bit for bit. */
    const float scale = 1.0f / (1.0f - rate);
    /* The layer index has 16 bits in the counter (rng.h); the CPU masks it the same way. */
    const uint32_t purpose = ((uint32_t)CT_RNG_DROPOUT << 16) | (key.layer & 0xFFFFu);
    const uint32_t lo = (uint32_t)key.seed, hi = (uint32_t)(key.seed >> 32);
    size_t total = (size_t)n * (((size_t)dim + 3) / 4);
    unsigned grid = ct_cu_grid(ctx, total, THREADS);
    if (dim % 4 == 0 && aligned16(y) && aligned16(x)) {
        dropout_kernel4<<<grid, THREADS, 0, ctx->stream>>>((float4 *)y, (const float4 *)x, n, dim,
                                                           rate, scale, lo, hi, purpose,
                                                           key.step, key.row0);
    } else {
        dropout_kernel<<<grid, THREADS, 0, ctx->stream>>>(y, x, n, dim, rate, scale, lo, hi,
                                                          purpose, key.step, key.row0);
    }
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

ct_status ct_cu_dropout_forward(void *ctx, float *y, const float *x, int n, int dim, float rate,
                                ct_dropout_key key) {
    return dropout_run((ct_cu_ctx *)ctx, "dropout_forward", y, x, n, dim, rate, key);
}

ct_status ct_cu_dropout_backward(void *ctx, float *dx, const float *dy, int n, int dim,
                                 float rate, ct_dropout_key key) {
    /* The mask is recomputed from the key rather than stored: it costs a few integer
     * multiplies per four units and saves an (n, dim) buffer per dropout layer. */
    return dropout_run((ct_cu_ctx *)ctx, "dropout_backward", dx, dy, n, dim, rate, key);
}

/* ---- concatenation along features ------------------------------------------------------ */

template <typename I>
__global__ void concat_kernel(float *y, const float *a, const float *b, I n, I da, I db) {
    I width = da + db;
    I total = n * width;
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        I r = i / width, j = i % width;
        y[i] = j < da ? a[r * da + j] : b[r * db + (j - da)];
    }
}

/* The gradient splits back; a side whose pointer is NULL needs none and is skipped. */
template <typename I>
__global__ void concat_backward_kernel(float *da, float *db, const float *dy, I n, I da_dim,
                                       I db_dim) {
    I width = da_dim + db_dim;
    I total = n * width;
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        I r = i / width, j = i % width;
        if (j < da_dim) {
            if (da) da[r * da_dim + j] = dy[i];
        } else if (db) {
            db[r * db_dim + (j - da_dim)] = dy[i];
        }
    }
}

ct_status ct_cu_concat_forward(void *p, float *y, const float *a, const float *b, int n, int da,
                               int db) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (n < 0 || da < 0 || db < 0) {
        return ct_error(CT_EINVAL, "cuda concat_forward: n %d, da %d, db %d", n, da, db);
    }
    size_t total = (size_t)n * ((size_t)da + db);
    if (total == 0) return CT_OK;
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    unsigned grid = ct_cu_grid(ctx, total, THREADS);
    if (ct_cu_fits_32(total)) {
        concat_kernel<uint32_t><<<grid, THREADS, 0, ctx->stream>>>(y, a, b, n, da, db);
    } else {
        concat_kernel<size_t><<<grid, THREADS, 0, ctx->stream>>>(y, a, b, n, da, db);
    }
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

ct_status ct_cu_concat_backward(void *p, float *da, float *db, const float *dy, int n,
                                int da_dim, int db_dim) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (n < 0 || da_dim < 0 || db_dim < 0) {
        return ct_error(CT_EINVAL, "cuda concat_backward: n %d, da %d, db %d", n, da_dim,
                        db_dim);
    }
    size_t total = (size_t)n * ((size_t)da_dim + db_dim);
    if (total == 0 || (!da && !db)) return CT_OK;
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    unsigned grid = ct_cu_grid(ctx, total, THREADS);
    if (ct_cu_fits_32(total)) {
        concat_backward_kernel<uint32_t><<<grid, THREADS, 0, ctx->stream>>>(da, db, dy, n, da_dim,
                                                                            db_dim);
    } else {
        concat_backward_kernel<size_t><<<grid, THREADS, 0, ctx->stream>>>(da, db, dy, n, da_dim,
                                                                          db_dim);
    }
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}

/* ---- finite check ---------------------------------------------------------------------- */

/* Sets *flag to 1 when any value is NaN or infinite. Each block votes once, so a tensor full of
 * NaNs costs one store per block rather than one per element. */
__global__ void nonfinite_kernel(int *flag, const float *x, size_t count) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    int bad = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        bad |= !isfinite(x[i]);
    }
    if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

__global__ void nonfinite_kernel4(int *flag, const float4 *x, size_t count4, const float *tail,
                                  size_t tail_count) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    int bad = 0;
    for (size_t i = tid; i < count4; i += stride) {
        float4 v = x[i];
        bad |= !isfinite(v.x) | !isfinite(v.y) | !isfinite(v.z) | !isfinite(v.w);
    }
    if (tid < tail_count) bad |= !isfinite(tail[tid]);
    if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

ct_status ct_cu_check_finite(void *p, bool *finite, const float *x, size_t count) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)p;
    if (!finite) return ct_error(CT_EINVAL, "cuda check_finite: finite is NULL");
    *finite = true;
    if (count == 0) return CT_OK;
    ct_status st = ct_cu_enter(ctx);
    if (st != CT_OK) return st;
    CT_CU_CHECK(cudaMemsetAsync(ctx->flag_dev, 0, sizeof(int), ctx->stream));
    if (aligned16(x)) {
        size_t count4 = count / 4, tail = count % 4;
        nonfinite_kernel4<<<ct_cu_grid(ctx, count4 > 0 ? count4 : 1, THREADS), THREADS, 0,
                            ctx->stream>>>(ctx->flag_dev, (const float4 *)x, count4,
                                           x + count4 * 4, tail);
    } else {
        nonfinite_kernel<<<ct_cu_grid(ctx, count, THREADS), THREADS, 0, ctx->stream>>>(
            ctx->flag_dev, x, count);
    }
    CT_CU_CHECK_LAUNCH();
    /* The flag is pinned host memory, so this is a DMA after the kernel; the wait is the one
     * the caller asked for by wanting the answer on the host. */
    CT_CU_CHECK(cudaMemcpyAsync(ctx->flag_host, ctx->flag_dev, sizeof(int),
                                cudaMemcpyDeviceToHost, ctx->stream));
    CT_CU_CHECK(cudaStreamSynchronize(ctx->stream));
    *finite = *ctx->flag_host == 0;
    return CT_OK;
}

/* ---- flip: test-time augmentation's mirrored copies ----------------------------------------- */

/* One thread per value of the first image pixel of each mirror pair (p < q): it swaps that value
 * with its twin, so no value is touched twice and no thread races another. */
__global__ static void flip_kernel(float *x, size_t total, int h, int w, int c, bool horizontal,
                                   bool vertical) {
    const size_t hwc = (size_t)h * w * c;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t img = e / hwc, r = e % hwc;
        const size_t p = r / (size_t)c;
        const int k = (int)(r % (size_t)c);
        const int y = (int)(p / (size_t)w), px = (int)(p % (size_t)w);
        const size_t q = (size_t)(vertical ? h - 1 - y : y) * w + (horizontal ? w - 1 - px : px);
        if (p >= q) continue;
        float *a = x + img * hwc + p * c + k, *b = x + img * hwc + q * c + k;
        const float t = *a;
        *a = *b;
        *b = t;
    }
}

ct_status ct_cu_flip(void *ctx_, float *x, int n, int h, int w, int c, bool horizontal,
                     bool vertical) {
    ct_cu_ctx *ctx = (ct_cu_ctx *)ctx_;
    ct_status st = ct_flip_check(x, n, h, w, c);
    if (st != CT_OK || n == 0 || (!horizontal && !vertical)) return st;
    if ((st = ct_cu_enter(ctx)) != CT_OK) return st;
    const size_t total = (size_t)n * h * w * c;
    flip_kernel<<<ct_cu_grid(ctx, total, THREADS), THREADS, 0, ctx->stream>>>(x, total, h, w, c,
                                                                              horizontal,
                                                                              vertical);
    CT_CU_CHECK_LAUNCH();
    return CT_OK;
}
