/* Saves that meet a full disk and reads and saves that fail part way leave nothing behind.
 *
 * A weights or checkpoint save past a file-size limit (RLIMIT_FSIZE with SIGXFSZ ignored: write
 * fails with EFBIG, as it fails with ENOSPC on a full disk) fails with a message naming the file
 * and the reason, keeps the previous file and leaves no HDF5 identifier open: libhdf5 1.10
 * crashes at exit when a file whose close failed is still registered. `cutune train` meeting the
 * limit exits 1 with that message (not a signal) and its checkpoint still resumes; where this
 * process may mount a tmpfs, the same on a really full disk. Every failing HDF5 call of a save
 * and of each read, and every damaged fixture, leaves no identifier open either. */
#include "train_cli_util.h"

#include <sys/mount.h>
#include <sys/resource.h>

#include "io/io.h"
#include "util.h"

TestSuite(weights_faults, .init = tc_setup, .fini = tc_teardown, .timeout = 600);

/* ---- counting HDF5 identifiers ----
 *
 * HDF5 numbers the identifiers of each type in sequence (H5I_register: nextid++), so every
 * identifier made between two censuses lies between the two probes of its type; one still
 * valid afterwards was left open. H5Fget_obj_count sees files and what is open in them. */

static const H5I_type_t census_types[] = {H5I_FILE,      H5I_GROUP,   H5I_DATATYPE,
                                          H5I_DATASPACE, H5I_DATASET, H5I_ATTR,
                                          H5I_GENPROP_LST};
#define N_CENSUS (int)(sizeof census_types / sizeof census_types[0])

typedef struct census {
    hid_t probe[N_CENSUS];
} census;

static census census_take(void) {
    census c;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    cr_assert(fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0);
    hid_t f = H5Fcreate("census", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    hid_t g = H5Gcreate2(f, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_NATIVE_INT), s = H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(f, "d", t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t a = H5Acreate2(f, "a", t, s, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t ids[N_CENSUS] = {f, g, t, s, d, a, fapl};
    for (int i = 0; i < N_CENSUS; i++) {
        cr_assert(ids[i] >= 0 && H5Iget_type(ids[i]) == census_types[i], "census probe %d", i);
        c.probe[i] = ids[i];
    }
    H5Aclose(a);
    H5Dclose(d);
    H5Sclose(s);
    H5Tclose(t);
    H5Gclose(g);
    H5Fclose(f);
    H5Pclose(fapl);
    return c;
}

/* Identifiers made since `before` and still open, with the first in `first`. */
static int census_open_since(const census *before, char *first, size_t cap) {
    census after = census_take();
    int open = 0;
    first[0] = '\0';
    for (int i = 0; i < N_CENSUS; i++)
        for (hid_t id = before->probe[i] + 1; id < after.probe[i]; id++)
            if (H5Iis_valid(id) > 0 && open++ == 0)
                snprintf(first, cap, "identifier %lld of type %d", (long long)id,
                         (int)census_types[i]);
    return open;
}

#define EXPECT_NOTHING_OPEN(before, what)                                                       \
    do {                                                                                        \
        char first_[96];                                                                        \
        int open_ = census_open_since(&(before), first_, sizeof first_);                         \
        cr_expect_eq(open_, 0, "%s left %d HDF5 identifier(s) open, the first %s", what, open_, \
                     first_);                                                                   \
        cr_expect_eq(H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL), 0,                     \
                     "%s left an HDF5 file or object open", what);                             \
    } while (0)

/* ---- helpers ---- */

static ct_backend be;

static ct_model *small_model(const char *head) {
    cr_assert_eq(ct_backend_cpu_init(&be, 1), CT_OK);
    ct_model_config cfg = {.input_h = 32, .input_w = 32, .input_c = 3, .max_batch = 1,
                           .head = head, .seed = 1};
    ct_model *m = NULL;
    cr_assert_eq(ct_model_init(&m, &cfg, &be), CT_OK, "%s", ct_last_error());
    return m;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n + 1);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* Whether `path` still holds exactly `before`. */
static bool unchanged(const char *path, const unsigned char *before, size_t n0) {
    size_t n1;
    unsigned char *now = slurp(path, &n1);
    bool same = n1 == n0 && memcmp(before, now, n0) == 0;
    free(now);
    return same;
}

/* Entries of a folder whose names hold ".tmp-" (an atomic save's temporary file). */
static int temporaries(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) n += strstr(e->d_name, ".tmp-") != NULL;
    closedir(d);
    return n;
}

/* A soft file-size limit for this process and the programs it starts; writes past it fail
 * with EFBIG (SIGXFSZ, which would kill, is ignored). */
static struct rlimit saved_fsize;

static void limit_file_size(rlim_t bytes) {
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
    struct rlimit l = saved_fsize;
    l.rlim_cur = bytes;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &l), 0, "setrlimit: %s", strerror(errno));
    signal(SIGXFSZ, SIG_IGN);
}

static void unlimit_file_size(void) {
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
    signal(SIGXFSZ, SIG_DFL);
}

/* ---- saves past a file-size limit ---- */

Test(weights_faults, saves_past_a_file_size_limit_fail_cleanly_and_keep_the_old_file) {
    ct_model *m = small_model("mri");
    const char *classes[2] = {"dementia", "normal"};
    ct_weights_save_opts so = {.class_names = classes, .n_classes = 2};
    const char *w = tc_path("w.h5"), *ck = tc_path("ck.h5");
    ct_checkpoint_state st = {.lr_scale = 1.0, .best_epoch = -1};
    snprintf(st.monitor, sizeof st.monitor, "val_loss");
    cr_assert_eq(ct_weights_save(m, w, &so), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_checkpoint_save(m, ck, &so, &st), CT_OK, "%s", ct_last_error());
    size_t nw, nck;
    unsigned char *w0 = slurp(w, &nw), *ck0 = slurp(ck, &nck);

    census before = census_take();
    /* 4 MiB: far less than the 59 MB of a VGG16's weights. */
    limit_file_size((rlim_t)4 << 20);
    ct_status sw = ct_weights_save(m, w, &so);
    char msg_w[1024];
    snprintf(msg_w, sizeof msg_w, "%s", ct_last_error());
    ct_status sck = ct_checkpoint_save(m, ck, &so, &st);
    unlimit_file_size();
    cr_expect_eq(sw, CT_EIO, "weights save past the limit: %d, %s", sw, msg_w);
    cr_expect(strstr(msg_w, w) != NULL && strstr(msg_w, "File too large") != NULL,
              "the message should name the file and the reason: %s", msg_w);
    cr_expect_eq(sck, CT_EIO, "checkpoint save past the limit: %d, %s", sck, ct_last_error());
    cr_expect(strstr(ct_last_error(), ck) != NULL &&
                  strstr(ct_last_error(), "File too large") != NULL,
              "the message should name the file and the reason: %s", ct_last_error());
    EXPECT_NOTHING_OPEN(before, "a save past the file-size limit");
    cr_expect(unchanged(w, w0, nw), "the failed save changed %s", w);
    cr_expect(unchanged(ck, ck0, nck), "the failed save changed %s", ck);
    cr_expect_eq(temporaries(tc_dir), 0, "a failed save left its temporary file");

    /* Both still load, and a save without the limit works again. */
    ct_checkpoint_state got;
    cr_expect_eq(ct_checkpoint_load(m, ck, &got), CT_OK, "%s", ct_last_error());
    ct_checkpoint_state_free(&got);
    cr_expect_eq(ct_weights_load(m, w, NULL, NULL), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_weights_save(m, w, &so), CT_OK, "%s", ct_last_error());
    free(w0);
    free(ck0);
    ct_model_free(m);
    ct_backend_free(&be);
}

/* ---- every failing HDF5 call ---- */

/* One operation on files: a save or a read. */
typedef ct_status (*file_op)(ct_model *m, const char *path);

static ct_status op_save(ct_model *m, const char *path) { return ct_weights_save(m, path, NULL); }

static ct_status op_checkpoint_save(ct_model *m, const char *path) {
    ct_checkpoint_state st = {.lr_scale = 1.0, .best_epoch = -1};
    return ct_checkpoint_save(m, path, NULL, &st);
}

static ct_status op_read_config(ct_model *m, const char *path) {
    (void)m;
    ct_model_config c = {0};
    ct_saved_config x;
    ct_status s = ct_weights_read_config(path, &c, &x);
    if (s == CT_OK) ct_saved_config_free(&x);
    return s;
}

static ct_status op_inspect(ct_model *m, const char *path) {
    (void)m;
    ct_weights_file *wf = NULL;
    ct_status s = ct_weights_inspect(path, &wf);
    ct_weights_file_free(wf);
    return s;
}

static ct_status op_load(ct_model *m, const char *path) {
    return ct_weights_load(m, path, NULL, NULL);
}

static ct_status op_checkpoint_load(ct_model *m, const char *path) {
    ct_checkpoint_state st;
    ct_status s = ct_checkpoint_load(m, path, &st);
    ct_checkpoint_state_free(&st);
    return s;
}

/* Fails a spread of the operation's HDF5 calls in turn (each of them on the reads; a save
 * writes 59 MB each time) and checks that each failure closes what it opened. A save fails
 * whichever call fails; a read may get past a failed probe (an attribute's dataspace class, a
 * string's padding), so only what it leaves open is checked there. */
static void fail_each_call(ct_model *m, const char *path, file_op op, const char *what) {
    ct__h5_fault_arm(0);
    cr_assert_eq(op(m, path), CT_OK, "%s: %s", what, ct_last_error());
    long calls = ct__h5_fault_arm(0);
    cr_assert(calls > 5, "%s made only %ld HDF5 calls?", what, calls);
    const bool save = op == op_save || op == op_checkpoint_save;
    const long step = save ? calls / 40 + 1 : 1;
    for (long n = 1; n <= calls; n = n < 8 || n > calls - 4 ? n + 1 : n + step) {
        census before = census_take();
        ct__h5_fault_arm(n);
        ct_status s = op(m, path);
        ct__h5_fault_arm(0);
        cr_assert(!save || s != CT_OK, "%s: failing HDF5 call %ld of %ld did not fail it", what,
                  n, calls);
        char label[128];
        snprintf(label, sizeof label, "%s failing at HDF5 call %ld of %ld", what, n, calls);
        EXPECT_NOTHING_OPEN(before, label);
    }
}

Test(weights_faults, every_failing_hdf5_call_closes_what_it_opened) {
    ct_model *m = small_model("mri");
    ct_optimizer_config oc;
    ct_optimizer_defaults(&oc, CT_OPT_ADAM);
    cr_assert_eq(ct_model_freeze_to(m, "block5_pool"), CT_OK);
    cr_assert_eq(ct_model_compile(m, &oc), CT_OK, "%s", ct_last_error());
    const char *w = tc_path("w.h5"), *ck = tc_path("ck.h5");
    fail_each_call(m, w, op_save, "ct_weights_save");
    fail_each_call(m, ck, op_checkpoint_save, "ct_checkpoint_save");
    fail_each_call(m, w, op_read_config, "ct_weights_read_config");
    fail_each_call(m, w, op_inspect, "ct_weights_inspect");
    fail_each_call(m, w, op_load, "ct_weights_load");
    fail_each_call(m, ck, op_checkpoint_load, "ct_checkpoint_load");
    cr_expect_eq(temporaries(tc_dir), 0, "a failed save left its temporary file");
    ct_model_free(m);
    ct_backend_free(&be);
}

Test(weights_faults, damaged_files_leave_no_identifier_open) {
    ct_model *m = small_model("flatten,dense:64:relu,dense:2:softmax");
    static const char *const bad[] = {
        "bad_extra_layer.h5", "bad_float64.h5",     "bad_inf.h5",
        "bad_int_kernel.h5",  "bad_missing_dataset.h5", "bad_missing_layer.h5",
        "bad_nan.h5",         "bad_not_hdf5.h5",    "bad_not_keras.h5",
        "bad_shape.h5",       "bad_truncated.h5",
    };
    const file_op ops[] = {op_inspect, op_read_config, op_load, op_checkpoint_load};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
            census before = census_take();
            (void)ops[k](m, tu_fixture(bad[i]));
            char label[128];
            snprintf(label, sizeof label, "reading %s (way %zu)", bad[i], k);
            EXPECT_NOTHING_OPEN(before, label);
        }
    ct_model_free(m);
    ct_backend_free(&be);
}

/* ---- `cutune train` on a full disk ---- */

#define RUN_ARGS "--data %s/d/train --out %s --head mri " TC_SMALL " --verbose 0"

/* Runs `cutune ARGS` like tc_run, but returns the raw wait status: a crash must show as one. */
__attribute__((format(printf, 1, 2))) static int run_status(const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "exec '%s' %s 2>&1", getenv("CUTUNE_CLI"), args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(tc_out, 1, sizeof tc_out - 1, p);
    tc_out[n] = '\0';
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) continue;
    return pclose(p);
}

/* A run that trained one epoch, then resumed for a second one that cannot be saved: it exits 1
 * naming the file and `reason`, and its checkpoint stays as it was and resumes once there is
 * room. `full` makes the disk full for the second run and `room` ends that. */
static void resume_on_a_full_disk(const char *run, void (*full)(void), void (*room)(void),
                                  const char *reason) {
    int st = run_status("train " RUN_ARGS " --epochs 1", D, run);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "first run: status %d:\n%s", st, tc_out);
    char ck[600];
    snprintf(ck, sizeof ck, "%s/checkpoint.h5", run);
    size_t n0;
    unsigned char *ck0 = slurp(ck, &n0);

    full();
    st = run_status("train " RUN_ARGS " --epochs 2 --resume", D, run);
    room();
    cr_expect(!WIFSIGNALED(st), "cutune train was killed by signal %d (%s) after:\n%s",
              WIFSIGNALED(st) ? WTERMSIG(st) : 0, WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "",
              tc_out);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d, expected exit 1:\n%s", st,
              tc_out);
    cr_expect(strstr(tc_out, "cannot write ") != NULL && strstr(tc_out, run) != NULL &&
                  strstr(tc_out, ".h5") != NULL && strstr(tc_out, reason) != NULL,
              "the message should name the file and '%s':\n%s", reason, tc_out);
    cr_expect(unchanged(ck, ck0, n0), "the failed run changed %s", ck);
    cr_expect_eq(temporaries(run), 0, "the failed run left a temporary file");
    free(ck0);

    st = run_status("train " RUN_ARGS " --epochs 2 --resume", D, run);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "resuming afterwards: status %d:\n%s", st,
              tc_out);
}

static void limit_4mb(void) { limit_file_size((rlim_t)4 << 20); }

Test(weights_faults, train_past_a_file_size_limit_exits_1_and_keeps_its_checkpoint) {
    resume_on_a_full_disk(tc_path("run"), limit_4mb, unlimit_file_size, "File too large");
}

/* A 200 MB tmpfs holds the first run's best.h5, checkpoint.h5 and final.h5 (59 MB each) but
 * not the second run's first new file beside them: a really full disk. Mounting needs
 * privileges; without them the test says so and skips (the file-size limit stands in). */
static char run_in_tmpfs[700], tmpfs[600];

/* The mount goes before the folder does, whatever the test's outcome. */
static void unmount_and_teardown(void) {
    if (tmpfs[0] != '\0') umount2(tmpfs, MNT_DETACH);
    tc_teardown();
}

static void disk_as_it_is(void) {}

static void make_room(void) {
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "rm -f '%s/best.h5' '%s/final.h5'", run_in_tmpfs, run_in_tmpfs);
    cr_assert_eq(system(cmd), 0);
}

Test(weights_faults, train_on_a_full_tmpfs_exits_1_and_keeps_its_checkpoint,
     .fini = unmount_and_teardown) {
    const char *mnt = tc_path("mnt");
    cr_assert_eq(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=200m") != 0)
        cr_skip_test("cannot mount a tmpfs here (%s)", strerror(errno));
    snprintf(tmpfs, sizeof tmpfs, "%s", mnt);
    snprintf(run_in_tmpfs, sizeof run_in_tmpfs, "%s/run", mnt);
    resume_on_a_full_disk(run_in_tmpfs, disk_as_it_is, make_room, "No space left on device");
}
