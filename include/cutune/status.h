/* Status codes and error messages.
 *
 * Every library function that can fail returns a ct_status. The code says what kind of failure it
 * was; the message (ct_last_error) says which file, item and reason, in a sentence a user can act
 * on. Codes and their default texts come from one X-macro so the enum and ct_strerror cannot
 * drift apart. The message is per thread, so loader threads do not overwrite each other's. */
#ifndef CUTUNE_STATUS_H
#define CUTUNE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* What the shared library exports: the functions declared in include/cutune/. Everything else
 * in libcutune is internal (built with hidden visibility). */
#if defined(__GNUC__)
#define CT_API __attribute__((visibility("default")))
#else
#define CT_API
#endif

#define CT_STATUS_MAP(X)                                                  \
    X(CT_OK, "success")                                                   \
    X(CT_EINVAL, "invalid argument")                                      \
    X(CT_ENOMEM, "out of memory")                                         \
    X(CT_EIO, "input/output error")                                       \
    X(CT_EFORMAT, "bad file format")                                      \
    X(CT_ESHAPE, "shape mismatch")                                        \
    X(CT_ENOTFOUND, "not found")                                          \
    X(CT_EUNSUPPORTED, "not supported")                                   \
    X(CT_ENODEV, "no usable CUDA device")                                 \
    X(CT_EDEVICE, "device error")                                         \
    X(CT_ENUMERIC, "non-finite value")                                    \
    X(CT_EINTR, "interrupted")                                            \
    X(CT_EDEVMEM, "out of device memory")

typedef enum {
#define CT_STATUS_ENUM(name, text) name,
    CT_STATUS_MAP(CT_STATUS_ENUM)
#undef CT_STATUS_ENUM
    CT_STATUS_COUNT
} ct_status;

/* The fixed text of a status code ("shape mismatch"). Never NULL. */
CT_API const char *ct_strerror(ct_status s);

/* The symbolic name of a status code ("CT_ESHAPE"). Never NULL. */
CT_API const char *ct_status_name(ct_status s);

/* The detailed message of the last failure on this thread, or ct_strerror of the last code when
 * no detail was recorded. Never NULL. */
CT_API const char *ct_last_error(void);

/* Records a formatted detail message for this thread and returns `s`, so failures read as
 * `return ct_error(CT_EFORMAT, "%s: not a PNG file (bad signature)", path);`. */
CT_API ct_status ct_error(ct_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Forgets the last message of this thread. */
CT_API void ct_error_clear(void);

#ifdef __cplusplus
}
#endif
#endif
