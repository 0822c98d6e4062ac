/* Data-parallel training on the CPU backend: CPU ranks launched by mpirun (Open MPI, as root
 * with --oversubscribe), their gradient buckets summed by MPI_Allreduce.
 *
 * Two ranks at a global --batch-size 8 against one: the same epochs (loss, accuracy, validation
 * within 1e-5 relative) and the same saved models within 1e-5, with dropout, augmentation and
 * an uneven last batch (12 images: 8 + 4), through the whole backbone's top block and through
 * the frozen-prefix cache; only rank 0 writes; a run stopped on 2 ranks continues on 1 and one
 * stopped on 1 continues on 2; three ranks with empty shares; kill -9 of one rank ends the other
 * with a message naming it, Ctrl-C on mpirun stops both after rank 0's checkpoint, and the same
 * command continues the run; a rank that hangs ends the other after the collectives' timeout; a
 * NaN stops both at the same step; settings that differ between ranks, a batch smaller than the
 * ranks and CPU ranks without MPI are refused with a message; bench reports every rank.
 * Skipped where mpirun is not installed (CI installs Open MPI). */
#include "train_cli_util.h"

#include <time.h>

TestSuite(dist_cpu, .init = tc_setup, .fini = tc_teardown, .timeout = 600);

/* Open MPI as root (CI), with more ranks than cores. */
#define MPI                                                                                    \
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np "

/* The whole top block and the head train, with augmentation: no frozen-prefix cache. SGD:
 * Adam divides each gradient by its own root mean square, so where a gradient is a sum that
 * cancels to rounding noise (about 1e-9), the other summation order of two ranks moves the
 * weight by up to lr / 100 either way: the runs then agree to 1e-4, not 1e-5. */
#define TOP_FLAGS                                                                              \
    "--data %s/d/train --val %s/d/val --input-size 32 --batch-size 8 --weights none "          \
    "--device cpu --threads 1 --head " TC_DROP_HEAD " --strategy top --horizontal-flip "      \
    "--rotation-range 10 --optimizer sgd --lr 0.01 --momentum 0.9 --epochs 3 --verbose 2"
/* The head alone: the frozen backbone's output is cached. */
#define HEAD_FLAGS                                                                             \
    "--data %s/d/train --val %s/d/val --input-size 32 --batch-size 8 --weights none "          \
    "--device cpu --threads 1 --head " TC_DROP_HEAD " --strategy head --optimizer sgd "      \
    "--lr 0.05 --momentum 0.9 --epochs 3 --verbose 2"

static bool have_mpirun(void) { return system("command -v mpirun >/dev/null 2>&1") == 0; }

#define NEED_MPIRUN()                                                                          \
    do {                                                                                       \
        if (!have_mpirun()) cr_skip_test("mpirun is not installed (apt install openmpi-bin)"); \
    } while (0)

static double rel(double a, double b) {
    const double d = fabs(a - b), m = fmax(fabs(a), fabs(b));
    return m > 0.0 ? d / m : 0.0;
}

/* log.csv of run b against a's: every value within `tol` relative. */
static void expect_close_logs(const char *a, const char *b, double tol) {
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/log.csv", a);
    snprintf(pb, sizeof pb, "%s/log.csv", b);
    tc_csv *la = tc_csv_read(pa), *lb = tc_csv_read(pb);
    cr_assert_eq(la->rows, lb->rows, "%s has %d epochs, %s %d", pa, la->rows, pb, lb->rows);
    cr_assert_eq(la->cols, lb->cols);
    for (int r = 0; r < la->rows; r++)
        for (int c = 0; c < la->cols - 1; c++)
            cr_expect_leq(rel(la->v[r][c], lb->v[r][c]), tol, "epoch %d %s: %.9g against %.9g",
                          r + 1, la->names[c + 1], la->v[r][c], lb->v[r][c]);
    free(la);
    free(lb);
}

/* ---- arrays of two HDF5 files within a tolerance ---- */

typedef struct close_cmp {
    hid_t other;
    int compared;
    double worst;
    char where[512];
} close_cmp;

static double array_diff(const float *a, const float *b, size_t n) {
    double d = 0.0, m = 1e-12;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)a[i]));
    }
    return d / m;
}

static herr_t close_visit(hid_t g, const char *name, const tc_linfo *info, void *op) {
    (void)info;
    close_cmp *c = op;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0;
    hid_t t = H5Iget_type(o) == H5I_DATASET ? H5Dget_type(o) : -1;
    if (t >= 0 && H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4) {
        size_t na = 0, nb = 0;
        float *a = tc_h5_bytes(o, &na), *b = NULL;
        hid_t ob = H5Lexists(c->other, name, H5P_DEFAULT) > 0
                       ? H5Dopen2(c->other, name, H5P_DEFAULT) : -1;
        if (ob >= 0) {
            b = tc_h5_bytes(ob, &nb);
            H5Dclose(ob);
        }
        const double d = b != NULL && na == nb ? array_diff(a, b, na / 4) : INFINITY;
        c->compared++;
        if (d > c->worst) {
            c->worst = d;
            snprintf(c->where, sizeof c->where, "%s", name);
        }
        free(a);
        free(b);
    }
    if (t >= 0) H5Tclose(t);
    H5Oclose(o);
    return 0;
}

static void expect_close_files(const char *a, const char *b, double tol) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fa = H5Fopen(a, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t fb = H5Fopen(b, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(fa >= 0 && fb >= 0, "%s or %s cannot be opened", a, b);
    close_cmp c = {.other = fb};
    cr_assert(tc_lvisit(fa, H5_INDEX_NAME, H5_ITER_INC, close_visit, &c) >= 0);
    H5Fclose(fa);
    H5Fclose(fb);
    cr_expect_geq(c.compared, 30, "%s: only %d arrays", a, c.compared);
    cr_expect_leq(c.worst, tol, "%s against %s: %s differs by %.3g (relative to its largest)", a,
                  b, c.where, c.worst);
}

static void expect_close_runs(const char *a, const char *b, double tol) {
    expect_close_logs(a, b, tol);
    static const char *const files[] = {"final.h5", "best.h5", "checkpoint.h5"};
    for (int i = 0; i < 3; i++) {
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        expect_close_files(pa, pb, tol);
    }
}

/* One rank's run against two ranks' of the same command. The second rank is started with
 * --out of a folder of its own (MPMD), which must not appear: rank 0 alone writes. */
static void two_against_one(const char *fmt, const char *name) {
    char flags[1024], one[128], two[128], elsewhere[128];
    snprintf(flags, sizeof flags, fmt, D, D);
    snprintf(one, sizeof one, "%s", tc_path("%s_one", name));
    snprintf(two, sizeof two, "%s", tc_path("%s_two", name));
    snprintf(elsewhere, sizeof elsewhere, "%s", tc_path("%s_rank1", name));
    TC_MUST(NULL, "train %s --out %s", flags, one);
    const char *cli = getenv("CUTUNE_CLI");
    TC_MUST(MPI "1", "train %s --out %s : -np 1 '%s' train %s --out %s", flags, two, cli, flags,
            elsewhere);
    cr_expect(strstr(tc_out, "Epoch 3/3") != NULL, "%s", tc_out);
    expect_close_runs(one, two, 1e-5);
    cr_expect(!tc_exists(elsewhere), "rank 1 wrote %s", elsewhere);
}

Test(dist_cpu, two_ranks_train_as_one_through_the_top_block) {
    NEED_MPIRUN();
    two_against_one(TOP_FLAGS, "top");
}

Test(dist_cpu, two_ranks_train_as_one_on_the_cached_head) {
    NEED_MPIRUN();
    two_against_one(HEAD_FLAGS, "head");
    cr_expect(strstr(tc_out, "frozen-prefix cache") != NULL, "the cache should be on:\n%s", tc_out);
}

/* Three ranks against one at a global batch `batch`, on the cached head. */
static void three_against_one(int batch) {
    char flags[1024], one[128], three[128];
    snprintf(flags, sizeof flags, HEAD_FLAGS " --batch-size %d", D, D, batch);
    snprintf(one, sizeof one, "%s", tc_path("one%d", batch));
    snprintf(three, sizeof three, "%s", tc_path("three%d", batch));
    TC_MUST(NULL, "train %s --out %s", flags, one);
    TC_MUST(MPI "3", "train %s --out %s", flags, three);
    expect_close_runs(one, three, 1e-5);
}

Test(dist_cpu, three_ranks_with_empty_shares_train_as_one) {
    NEED_MPIRUN();
    /* 12 training images in batches of 5: shares 1, 2, 2 of a full batch and 0, 1, 1 of the
     * last (2 images): rank 0 steps with no rows. */
    three_against_one(5);
    /* 4 validation images in batches of 3: the last (1 image) is rank 2's alone. */
    three_against_one(3);
}

/* A run stopped after `steps` steps (mid-epoch 2) with `first` ranks continues with `then`
 * ranks and ends as the uninterrupted one-rank run. */
static void resume_across(int first, int then) {
    char flags[1024], whole[128], run[128], env[256];
    snprintf(flags, sizeof flags, TOP_FLAGS, D, D);
    snprintf(whole, sizeof whole, "%s", tc_path("whole"));
    snprintf(run, sizeof run, "%s", tc_path("from%dto%d", first, then));
    TC_MUST(NULL, "train %s --out %s", flags, whole);
    snprintf(env, sizeof env, "CUTUNE_STOP_AFTER_STEPS=3 " MPI "%d -x CUTUNE_STOP_AFTER_STEPS",
             first);
    int rc = tc_run(env, "train %s --out %s", flags, run);
    cr_assert_neq(rc, 0, "the stopped run exited 0:\n%s", tc_out);
    cr_assert(tc_exists(tc_path("from%dto%d/checkpoint.h5", first, then)), "%s", tc_out);
    snprintf(env, sizeof env, MPI "%d", then);
    TC_MUST(env, "train %s --out %s --resume", flags, run);
    cr_expect(strstr(tc_out, "resuming") != NULL && strstr(tc_out, "batch 2") != NULL, "%s",
              tc_out);
    expect_close_runs(whole, run, 1e-5);
}

Test(dist_cpu, resume_two_ranks_on_one) {
    NEED_MPIRUN();
    resume_across(2, 1);
}

Test(dist_cpu, resume_one_rank_on_two) {
    NEED_MPIRUN();
    resume_across(1, 2);
}

/* The pid of rank `rank` of a run whose command line names `marker`, from /proc. */
static pid_t rank_pid(const char *marker, int rank) {
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    DIR *d = opendir("/proc");
    cr_assert_not_null(d);
    struct dirent *e;
    pid_t found = -1;
    while (found < 0 && (e = readdir(d)) != NULL) {
        const pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        char path[64], buf[1 << 15];
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        FILE *f = fopen(path, "rb");
        if (f == NULL) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        bool is_rank = false;
        for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
            buf[n] = '\0';
            if (strcmp(buf + i, want) == 0) is_rank = true;
        }
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
        if (!is_rank || (f = fopen(path, "rb")) == NULL) continue;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (buf[i] == '\0') buf[i] = ' ';
        buf[n] = '\0';
        if (strstr(buf, marker) != NULL && strstr(buf, "mpirun") == NULL) found = pid;
    }
    closedir(d);
    return found;
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

Test(dist_cpu, bad_launches_are_refused_with_a_message) {
    NEED_MPIRUN();
    char flags[1024];
    snprintf(flags, sizeof flags, HEAD_FLAGS, D, D);
    const char *cli = getenv("CUTUNE_CLI");
    /* Ranks started with other settings. */
    int rc = tc_run(MPI "1", "train %s --out %s : -np 1 '%s' train %s --lr 0.5 --out %s", flags,
                    tc_path("differ"), cli, flags, tc_path("differ"));
    cr_expect_neq(rc, 0);
    cr_expect(strstr(tc_out, "differ from rank 0's") != NULL, "%s", tc_out);
    cr_expect(!tc_exists(tc_path("differ/checkpoint.h5")));
    /* A global batch smaller than the ranks. */
    rc = tc_run(MPI "3", "train %s --batch-size 2 --out %s", flags, tc_path("small"));
    cr_expect_neq(rc, 0);
    cr_expect(strstr(tc_out, "at least the number of ranks") != NULL, "%s", tc_out);
    /* CPU ranks from torchrun's environment: they sum through MPI only. */
    rc = tc_run("RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29533",
                "train %s --out %s", flags, tc_path("env"));
    cr_expect_neq(rc, 0);
    cr_expect(strstr(tc_out, "mpirun") != NULL, "%s", tc_out);
}

Test(dist_cpu, bench_reports_every_rank_and_the_global_rate) {
    NEED_MPIRUN();
    TC_MUST(MPI "2", "bench --device cpu --input-size 32 --batch-size 2 --steps 2 --warmup 1 "
            "--threads 1");
    cr_expect(strstr(tc_out, "| 0 | ") != NULL && strstr(tc_out, "| 1 | ") != NULL, "%s", tc_out);
    cr_expect(strstr(tc_out, "2 ranks (mpirun/srun, gradients summed by mpi): global batch 4")
              != NULL, "%s", tc_out);
}

/* Runs `cutune args` under mpirun with 2 ranks (CUTUNE_COLLECTIVE_TIMEOUT=8); once the output
 * holds `after`, sends `sig` to rank `rank` of the run whose command line names `marker`, or to
 * mpirun itself when rank is -1. Returns the milliseconds from the signal until mpirun ended
 * (-1: never sent), with its output in tc_out and its status in *status. A stopped rank is
 * killed at the end (mpirun's own kill may not reach it). */
static long signal_during(const char *args, const char *marker, const char *after, int rank,
                          int sig, int *status) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec env CUTUNE_COLLECTIVE_TIMEOUT=8 " MPI "2 '%s' %s 2>&1",
             getenv("CUTUNE_CLI"), args);
    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t got;
    long sent_at = -1;
    pid_t target = -1;
    while ((got = read(fd[0], tc_out + n, sizeof tc_out - 1 - n)) > 0) {
        n += (size_t)got;
        tc_out[n] = '\0';
        if (sent_at < 0 && strstr(tc_out, after) != NULL) {
            target = rank < 0 ? pid : rank_pid(marker, rank);
            cr_assert_gt(target, 0, "rank %d not found:\n%s", rank, tc_out);
            cr_assert_eq(kill(target, sig), 0);
            sent_at = now_ms();
        }
    }
    close(fd[0]);
    waitpid(pid, status, 0);
    if (sig == SIGSTOP && target > 0) kill(target, SIGKILL);
    return sent_at < 0 ? -1 : now_ms() - sent_at;
}

/* The same command with --resume finishes the run: every epoch in the log. */
static void expect_the_same_command_continues(const char *flags, const char *run, int epochs) {
    TC_MUST(MPI "2", "train %s --out %s --resume", flags, run);
    cr_expect(strstr(tc_out, "resuming") != NULL, "%s", tc_out);
    char path[600];
    snprintf(path, sizeof path, "%s/log.csv", run);
    tc_csv *log = tc_csv_read(path);
    cr_expect_eq(log->rows, epochs);
    free(log);
}

/* A 60-epoch run on the cached head in folder `name`, signalled at epoch 3 (two checkpoints
 * written): `sig` to rank `rank`, or to mpirun when rank is -1. Returns signal_during's time. */
static long signal_at_epoch_3(const char *name, int rank, int sig, int *status, char *flags,
                              char *run) {
    snprintf(flags, 1024, HEAD_FLAGS " --epochs 60", D, D);
    snprintf(run, 128, "%s", tc_path("%s", name));
    char args[1400];
    snprintf(args, sizeof args, "train %s --out %s", flags, run);
    const long took = signal_during(args, run, "Epoch 3/", rank, sig, status);
    cr_assert_geq(took, 0, "the run never reached epoch 3:\n%s", tc_out);
    cr_expect(WIFEXITED(*status) && WEXITSTATUS(*status) != 0, "mpirun exited 0:\n%s", tc_out);
    return took;
}

Test(dist_cpu, kill_9_of_one_rank_stops_the_other_and_the_run_continues) {
    NEED_MPIRUN();
    char flags[1024], run[128];
    int status = 0;
    const long took = signal_at_epoch_3("killed", 1, SIGKILL, &status, flags, run);
    cr_expect_lt(took, 30000, "the other rank took %ld ms to stop", took);
    cr_expect(strstr(tc_out, "rank 1") != NULL, "no message names rank 1:\n%s", tc_out);
    expect_the_same_command_continues(flags, run, 60);
}

Test(dist_cpu, ctrl_c_on_mpirun_stops_every_rank_after_a_checkpoint) {
    NEED_MPIRUN();
    char flags[1024], run[128];
    int status = 0;
    signal_at_epoch_3("interrupted", -1, SIGINT, &status, flags, run);
    /* Open MPI turns Ctrl-C into SIGTERM for every rank: both stop after the same step and
     * rank 0 writes the checkpoint. */
    cr_expect(strstr(tc_out, "checkpoint written to") != NULL, "%s", tc_out);
    cr_expect(strstr(tc_out, "rank 1: interrupted at epoch") != NULL, "%s", tc_out);
    expect_the_same_command_continues(flags, run, 60);
}

Test(dist_cpu, a_rank_that_hangs_stops_the_other_after_the_timeout) {
    NEED_MPIRUN();
    char args[1400], run[128];
    snprintf(run, sizeof run, "%s", tc_path("hung"));
    snprintf(args, sizeof args, "train " HEAD_FLAGS " --epochs 500 --out %s", D, D, run);
    int status = 0;
    const long took = signal_during(args, run, "Epoch 3/", 1, SIGSTOP, &status);
    cr_assert_geq(took, 0, "the run never reached epoch 3:\n%s", tc_out);
    cr_expect_lt(took, 25000, "rank 0 took %ld ms to stop (timeout 8 s)", took);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) != 0, "mpirun exited 0:\n%s", tc_out);
    cr_expect(strstr(tc_out, "rank 0 of 2") != NULL &&
              strstr(tc_out, "for the other ranks (CUTUNE_COLLECTIVE_TIMEOUT=8)") != NULL,
              "no message says what rank 0 waited for:\n%s", tc_out);
    cr_expect(tc_exists(tc_path("hung/checkpoint.h5")), "the checkpoints are gone");
}

/* 12 iceberg records, one of whose band_1 is 3e38 everywhere: a NaN within the first steps. */
static void write_overflowing_records(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputc('[', f);
    for (int r = 0; r < 12; r++) {
        fprintf(f, "%s{\"id\": \"r%d\", \"inc_angle\": %d, \"is_iceberg\": %d", r ? "," : "", r,
                38 + r, r % 2);
        for (int band = 1; band <= 2; band++) {
            fprintf(f, ", \"band_%d\": [", band);
            for (int i = 0; i < 5625; i++)
                fprintf(f, "%s%g", i ? "," : "", r == 5 && band == 1 ? 3e38 : -20.0 - (i % 7));
            fputc(']', f);
        }
        fputc('}', f);
    }
    fputs("]\n", f);
    fclose(f);
}

Test(dist_cpu, a_nan_stops_every_rank_at_the_same_step) {
    NEED_MPIRUN();
    char json[128];
    snprintf(json, sizeof json, "%s", tc_path("overflow.json"));
    write_overflowing_records(json);
    const int rc = tc_run(MPI "2", "train --data %s --batch-size 4 --weights none --device cpu "
                          "--threads 1 --strategy head --epochs 2 --verbose 2 --out %s", json,
                          tc_path("nan"));
    cr_expect_neq(rc, 0, "%s", tc_out);
    /* Both ranks name the same step. */
    const char *first = strstr(tc_out, "cutune train: step ");
    cr_assert_not_null(first, "no message names the step:\n%s", tc_out);
    char step[32];
    cr_assert_eq(sscanf(first, "cutune train: step %31[0-9]", step), 1);
    char again[64];
    snprintf(again, sizeof again, "cutune train: step %s ", step);
    cr_expect_not_null(strstr(first + 1, again), "the ranks stopped at different steps:\n%s",
                       tc_out);
    cr_expect(strstr(tc_out, "NaN") != NULL || strstr(tc_out, "not finite") != NULL, "%s",
              tc_out);
}
