/* Private pieces shared by the files of src/io: the HDF5 call-checking macro, string-list
 * attributes, the child-process probe of new files, atomic file creation, the download of the
 * official weights, the file model the reader builds, and Keras's layer order. */
#ifndef CUTUNE_IO_INTERNAL_H
#define CUTUNE_IO_INTERNAL_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "io/weights.h"

/* Every HDF5 call goes through CT_H5, except the H5E* error-stack calls themselves and the
 * closes on cleanup paths (ct__h5_close), where a second failure must not replace the first. A
 * negative result (every HDF5 failure is one: hid_t, herr_t, htri_t, ssize_t, the enum
 * getters' -1; H5Tget_size's 0 is turned into one by hand) records the expression, function,
 * file and line together with the innermost message of HDF5's error stack; ct__h5_error then
 * builds the user's message from it. The macro evaluates to the call's result. The fault hook
 * lets tests make the n-th call fail without running it, to prove that every failure path
 * cleans up. */
#define CT_H5(expr)                                                                        \
    ct__h5_check(ct__h5_fault_now() ? (int64_t)-1 : (int64_t)(expr), #expr, __func__,      \
                 __FILE__, __LINE__)

int64_t ct__h5_check(int64_t ret, const char *expr, const char *func, const char *file,
                     int line);
bool ct__h5_fault_now(void);
/* Test hook: the n-th CT_H5 call from now (1 = the next) fails; 0 disarms. Returns how many
 * calls were counted since the last arm, so a test can learn how many calls a save makes. */
long ct__h5_fault_arm(long n);

/* Silences HDF5's automatic error printing and clears the last recorded failure. Every public
 * entry point calls it first. */
void ct__h5_begin(void);
/* Records `code` with the formatted message, followed by the recorded HDF5 failure in
 * parentheses: "(HDF5: <message>; H5Dread(...) in read_array at src/io/x.c:12)". */
ct_status ct__h5_error(ct_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Puts a formatted prefix before the current message: "<prefix>: <message>". (ct_error's
 * buffer is the one ct_last_error returns, so it must not be passed to ct_error directly.) */
ct_status ct__wrap(ct_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* HDF5's innermost message of the last recorded failure ("file signature not found"), or "". */
const char *ct__h5_last_message(void);
/* Whether the last recorded failure was the test hook's: that call never ran. */
bool ct__h5_failure_injected(void);

/* Closes any HDF5 identifier (file, group, dataset, attribute, type, space, plist); negative
 * ids are ignored. Used on cleanup paths, where a second failure must not mask the first. */
void ct__h5_close(hid_t id);

/* Opens `path` read-only, with messages for a missing file, a directory, a file that is not
 * HDF5 (checked by signature first) and a truncated one. */
ct_status ct__h5_open_read(const char *path, hid_t *file);

/* Reads a file new to this process in a child process first (h5_probe.c): CT_EFORMAT, naming
 * the file and what happened, when libhdf5 crashed, hung or was stopped there. `st` is the
 * file's stat, which identifies a file already read. */
struct stat;
ct_status ct__h5_probe(const char *path, const struct stat *st);
/* Test seam: `fn` (NULL: none) runs in the probe's child before it reads, so that a test can
 * end the child as a sanitizer or a hang would. */
void ct__h5_probe_set_hook(void (*fn)(void));

/* ---- string lists ---- */

typedef struct ct__strlist {
    int n;
    char **s; /* (n) */
} ct__strlist;

void ct__strlist_free(ct__strlist *l);

/* Reads attribute `name` of `loc` as a list of strings. Variable- and fixed-length strings are
 * both accepted; trailing NULs (and a fixed string's pad spaces) are stripped. A non-string
 * attribute with no elements (Keras writes float64 (0,) for an empty list) or a null dataspace
 * reads as an empty list. When `name` is absent, the split form name0, name1, ... is read.
 * *found says whether either form exists; *vlen and *split (may be NULL) describe it. `where`
 * names the object in messages. */
ct_status ct__h5_read_strings(hid_t loc, const char *name, const char *where, ct__strlist *out,
                              bool *found, bool *vlen, bool *split);
/* ct__h5_read_strings with bounds: at most `max_n` entries in all (refused before they are
 * read) and strings of at most `max_len` bytes (0: any length). */
ct_status ct__h5_read_names(hid_t loc, const char *name, const char *where, int max_n,
                            size_t max_len, ct__strlist *out, bool *found);

/* Writes `n` strings as attribute `name` the way h5py 3 writes a list of Python bytes
 * (variable-length, ASCII, null-terminated, 1-D). An empty list is written as Keras writes it:
 * float64 with a simple dataspace of dims {0}, never a null dataspace. When the strings would
 * exceed `limit` bytes (Keras: 64,512, counted as numpy does, n * longest), they are split into
 * name0, name1, ... exactly as Keras's save_attributes_to_hdf5_group splits them. */
ct_status ct__h5_write_strings(hid_t loc, const char *name, const char *const *s, int n,
                               size_t limit);
#define CT_KERAS_ATTR_LIMIT 64512

/* Scalar attributes. */
ct_status ct__h5_write_string(hid_t loc, const char *name, const char *value);
ct_status ct__h5_write_i64(hid_t loc, const char *name, const int64_t *v, int n);
ct_status ct__h5_write_f64(hid_t loc, const char *name, double v);
/* A float32 (little-endian) dataset `name` of shape dims[0..nd) in group g, created with link
 * properties lcpl (intermediate groups), from host floats. The message names `path` and
 * `what` ("dataset", "optimizer state"). */
ct_status ct__h5_write_f32(hid_t g, const char *name, const float *data, const hsize_t *dims,
                           int nd, hid_t lcpl, const char *path, const char *what);
/* Reads a string attribute (scalar, or the first element of a list) into buf. */
ct_status ct__h5_read_string(hid_t loc, const char *name, const char *where, char *buf,
                             size_t cap);
/* Reads `n` integers (exactly n elements) or one double. */
ct_status ct__h5_read_i64(hid_t loc, const char *name, const char *where, int64_t *v, int n);
ct_status ct__h5_read_f64(hid_t loc, const char *name, const char *where, double *v);
/* Reads a whole string attribute of any length; *out is malloc'd. */
ct_status ct__h5_read_string_alloc(hid_t loc, const char *name, const char *where, char **out);

/* ---- atomic files (h5_atomic.c) ---- */

typedef struct ct__h5_atomic {
    char final[CT_WEIGHTS_PATH_MAX];
    char tmp[CT_WEIGHTS_PATH_MAX];
    int fd;           /* of the temporary file, kept open for fsync */
    hid_t file;       /* the HDF5 file, built in memory */
    void *image;      /* (image_cap) bytes: the in-memory file, lent to HDF5 */
    size_t image_cap;
} ct__h5_atomic;

/* Creates an HDF5 file in memory and its temporary file beside `path` (same directory, so the
 * rename is atomic). The ct__h5_atomic must stay where it is until commit or abort. */
ct_status ct__h5_atomic_create(ct__h5_atomic *a, const char *path);
/* Finishes the file, writes it to the temporary file (write, fsync) and renames that over the
 * final name, then syncs the directory. On failure (a full disk, a file-size limit: the message
 * says which) it aborts: the temporary file is removed and no HDF5 identifier stays open. */
ct_status ct__h5_atomic_commit(ct__h5_atomic *a);
/* Closes the file, frees its image and removes the temporary file. Safe to call twice. */
void ct__h5_atomic_abort(ct__h5_atomic *a);

/* ---- downloading (download.c) ---- */

/* Downloads `url` to `dest` as Keras's get_file does: into `<dest>.part` (continuing one an
 * earlier attempt left, with a Range request), checked against `md5` (32 lowercase hex digits;
 * NULL: not checked) before rename() gives it its final name. Progress goes to `progress`
 * (NULL: quiet), as a bar redrawn in place when it is a terminal. Failures name the URL and
 * the reason and end with `by_hand` (NULL: nothing), which says how to get the file without
 * the download: CT_ENOTFOUND when no server could be reached or the file is not there (HTTP
 * 404, 410), CT_EIO for a transfer broken off (the .part is kept), another HTTP error, a
 * failed write, or a wrong MD5 (the .part is removed), CT_EINTR when SIGINT or SIGTERM stopped
 * the transfer (the .part is kept, and the signal is passed on to its previous handler). */
ct_status ct__download(const char *url, const char *dest, const char *md5, const char *by_hand,
                       FILE *progress);
/* The MD5 of a whole file as 32 lowercase hex digits (OpenSSL's EVP digest). */
ct_status ct__md5_file(const char *path, char hex[33]);

/* ---- the model side ---- */

/* Keras's model.layers order for the model that `cutune export-keras` prints: nodes sorted by
 * depth from the output (deepest first), ties by the pre-order index of a depth-first walk from
 * the output that visits a layer's inputs in order (Keras's map_graph). Node ids: layer
 * indices, CT__NODE_IMAGE, CT__NODE_AUX. `nodes` holds n_layers + 2; returns the count. */
#define CT__NODE_IMAGE (-1)
#define CT__NODE_AUX (-2)
int ct__keras_order(ct_model *m, int *nodes);

/* export-keras's code for model `m`, built from the file at `path` (keras_code.c). */
void ct__keras_code(FILE *f, ct_model *m, const char *path, const ct_saved_config *extra);

/* Names the image and aux inputs get in written files and exported code. */
#define CT__INPUT_IMAGE "input_image"
#define CT__INPUT_AUX "input_aux"

/* Whether layer i of the model is one of the 13 backbone convolutions. */
bool ct__is_backbone_conv(ct_model *m, int i);

/* The cutune_backbone attribute of a file's root ("vgg16" when absent: files written before
 * VGG19), checked against the known backbones. */
ct_status ct__read_backbone(hid_t root, const char *path, char *buf, size_t cap);

/* The model a legacy Keras model file describes (model.save('m.h5'): the root's model_config
 * JSON), mapped onto a cutune backbone and head spec (keras_config.c): fills cfg's backbone,
 * input size, aux_dim and head (pointing into `extra`) and extra's preprocessing ("caffe":
 * Keras does not keep it). CT_EUNSUPPORTED names the first layer cutune cannot run and why. */
ct_status ct__keras_read_model_config(hid_t root, const char *path, ct_model_config *cfg,
                                      ct_saved_config *extra);

/* Writes the weights layout and the cutune attributes into an open file (root group). */
ct_status ct__weights_write(ct_model *m, hid_t file, const char *path,
                            const ct_weights_save_opts *opts);

/* The root group that holds layer_names (the file itself, or /model_weights). */
ct_status ct__weights_root(hid_t file, const char *path, hid_t *root);

/* Parses the structure of an open file (ct_weights_inspect without opening). */
ct_status ct__weights_scan(hid_t file, const char *path, ct_weights_file **out);

/* Loads weights from an open file into the model (ct_weights_load without opening). */
ct_status ct__weights_load_open(ct_model *m, hid_t file, const ct_weights_file *wf,
                                const ct_weights_load_opts *opts, ct_weights_report *rep);

/* Appends a formatted sentence (and a newline) to rep->notes; rep may be NULL. */
void ct__report_note(ct_weights_report *rep, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* "(3, 3, 64, 128)" */
void ct__format_dims(char *buf, size_t cap, const int64_t *dims, int ndim);

#endif
