/* Helpers shared by the tests: deterministic random data, error norms, fixtures. */
#ifndef CUTUNE_TEST_UTIL_H
#define CUTUNE_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The official VGG16 files as keras.applications names them: the tests' own copy of the names
 * and checksums model/backbones.c holds (test_weights checks that the two agree). */
#define CT_IMAGENET_NOTOP "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
#define CT_IMAGENET_FULL "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
#define CT_IMAGENET_NOTOP_MD5 "6d6bbae143d832006294945121d1f1fc"
#define CT_IMAGENET_FULL_MD5 "64373286793e3c8b2b4e3219cbf3544b"

/* Fills x with uniform values in [lo, hi) from the counter-based generator (stream `tag`). */
void tu_fill(float *x, size_t n, uint32_t tag, float lo, float hi);
/* ||a - b|| / ||b||, in double; 0 when both are zero. */
double tu_rel_err(const float *a, const float *b, size_t n);
/* The path of a fixture file: $CUTUNE_FIXTURES/name (in one of four buffers, so that one call
 * may take several). */
const char *tu_fixture(const char *name);
/* A new folder /tmp/PREFIX_XXXXXX into dir (a suite's .init), and the folder removed with all
 * it holds (its .fini). */
void tu_temp_dir(char *dir, size_t cap, const char *prefix);
void tu_remove_dir(const char *dir);


/* A golden fixture written by tests/reference/vgg16_golden.py: one sampled array per line,
 * `name size stride count v0 ... v{count-1}`, v_k being element k*stride. */
typedef struct tu_array {
    char name[160];
    size_t size, stride, count;
    double *v;
} tu_array;

typedef struct tu_golden {
    tu_array *a;
    int n;
} tu_golden;

/* Returns 0 on success; prints the reason and returns -1 otherwise. */
int tu_golden_load(tu_golden *g, const char *path);
const tu_array *tu_golden_get(const tu_golden *g, const char *name);
void tu_golden_free(tu_golden *g);
/* ||sample(x) - ref|| / ||ref|| over the sampled indices; `x` holds `size` floats. When the
 * reference is all zero, the largest absolute sampled value instead. */
double tu_golden_err(const tu_array *ref, const float *x, size_t size);

/* Output of the last tu_sh / tu_cli call: stdout and stderr together. */
extern char tu_out[1 << 16];

/* Runs a shell command line, capturing stdout and stderr into tu_out; returns its exit code
 * (a test failure if it did not exit normally). */
int tu_sh(const char *cmdline);
/* Runs `$CUTUNE_CLI ARGS` (the cutune binary ctest points at) like tu_sh. */
int tu_cli(const char *args);

/* Expects `cutune ARGS` to exit with `code` and print `text` somewhere. */
#define TU_EXPECT_CLI(args, code, text)                                                      \
    do {                                                                                     \
        int rc_ = tu_cli(args);                                                              \
        cr_expect_eq(rc_, code, "cutune %s: exit %d, expected %d; output:\n%s", args, rc_,   \
                     code, tu_out);                                                          \
        cr_expect(strstr(tu_out, text) != NULL, "cutune %s: output lacks '%s':\n%s", args,   \
                  text, tu_out);                                                             \
    } while (0)

/* ---- CUDA tests ----
 * Whether a CUDA device is usable; when not, tu_no_gpu_reason says why (built without CUDA, no
 * driver, no device). CUDA test programs call it from their suite's init and start each test
 * with TU_REQUIRE_GPU(), so that without a GPU every test is skipped, visibly, with the reason
 * (ctest reports such a program as skipped). */
extern char tu_no_gpu_reason[512];
bool tu_gpu_usable(void);
#define TU_REQUIRE_GPU()                                                                       \
    do {                                                                                       \
        if (!tu_gpu_usable()) cr_skip_test("no usable CUDA device: %s", tu_no_gpu_reason);     \
    } while (0)

#endif
