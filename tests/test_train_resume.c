/* Exact resume, end to end: a run interrupted mid-epoch or at an epoch boundary (by
 * CUTUNE_STOP_AFTER_STEPS, or by a real SIGTERM) and continued with --resume ends with the same
 * log.csv, final.h5, best.h5 and checkpoint.h5 arrays, bit for bit, as the same run never
 * interrupted: with the frozen-prefix cache (Adam, dropout in the head, ReduceLROnPlateau state)
 * and without it (the whole network training, random flips, SGD with Nesterov momentum). Also:
 * the cache itself changes nothing, and --resume may extend --epochs. */
#include "train_cli_util.h"

#include <time.h>

TestSuite(train_resume, .init = tc_setup, .fini = tc_teardown, .timeout = 300);

/* Runs `train FLAGS --out OUT` interrupted after stops[0] steps, resumes it interrupted again
 * after stops[1] more, ..., then resumes it to the end, checking each interruption: exit 130,
 * the message, checkpoint.h5 there and different from the finished run's weights `a_final`
 * (so the comparisons below can fail), no final.h5, and the log rows of the epochs ended. */
static void interrupt_and_resume(const char *flags, const char *out, int steps_per_epoch,
                                 const int *stops, int n_stops, const char *a_final) {
    int done = 0;
    for (int i = 0; i < n_stops; i++) {
        char env[64];
        snprintf(env, sizeof env, "CUTUNE_STOP_AFTER_STEPS=%d", stops[i]);
        int rc = tc_run(env, "train %s --out %s%s", flags, out, i > 0 ? " --resume" : "");
        cr_assert_eq(rc, 130, "stop %d after %d steps: exit %d, expected 130:\n%s", i, stops[i],
                     rc, tc_out);
        done += stops[i];
        /* Stopped after global step `done`: 1-based epoch and batch of that step. */
        char want[128];
        snprintf(want, sizeof want, "interrupted at epoch %d, batch %d: checkpoint written",
                 (done - 1) / steps_per_epoch + 1, (done - 1) % steps_per_epoch + 1);
        cr_assert(strstr(tc_out, want) != NULL, "output lacks '%s':\n%s", want, tc_out);
        char path[600];
        snprintf(path, sizeof path, "%s/checkpoint.h5", out);
        cr_assert(tc_exists(path), "no checkpoint after the interruption");
        int n = 0;
        cr_expect_gt(tc_h5_diff(a_final, path, &n, NULL, 0), 0,
                     "the checkpoint after %d steps already equals the finished run", done);
        cr_expect_geq(n, 30);
        snprintf(path, sizeof path, "%s/final.h5", out);
        cr_assert(!tc_exists(path), "final.h5 written by an interrupted run");
        /* The log holds the epochs whose end was reached; a stop in the last step of an epoch
         * comes before its validation and log row. */
        snprintf(path, sizeof path, "%s/log.csv", out);
        tc_csv *log = tc_csv_read(path);
        cr_assert_eq(log->rows, (done - 1) / steps_per_epoch, "log.csv rows after %d steps",
                     done);
        free(log);
    }
    TC_MUST(NULL, "train %s --out %s --resume", flags, out);
    char want[700];
    snprintf(want, sizeof want, "resuming %s at epoch", out);
    cr_expect(strstr(tc_out, want) != NULL, "%s", tc_out);
}

/* The files of run b equal run a's. */
static void expect_same_run(const char *a, const char *b) {
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/log.csv", a);
    snprintf(pb, sizeof pb, "%s/log.csv", b);
    char *la = tc_read(pa), *lb = tc_read(pb);
    cr_assert(la != NULL && lb != NULL);
    cr_expect_str_eq(lb, la, "log.csv of the resumed run differs");
    free(la);
    free(lb);
    /* VGG16 + head: 13 conv and 2-3 dense layers, a kernel and a bias each. */
    static const char *const files[] = {"final.h5", "best.h5", "checkpoint.h5"};
    for (int i = 0; i < 3; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        TC_SAME_ARRAYS(pa, pb, 30);
    }
}

#define CACHED_FLAGS                                                                           \
    "--data %s/d/train --val %s/d/val " TC_SMALL " --head " TC_DROP_HEAD                       \
    " --strategy head --optimizer adam --lr 0.01 --reduce-lr-patience 0 --reduce-lr-factor 0.5 " \
    "--epochs 3 --verbose 2"

static int run_and_terminate(const char *args, const char *after);

Test(train_resume, cached_head) {
    char flags[1024], a[128], b[128], fa[600];
    snprintf(flags, sizeof flags, CACHED_FLAGS, D, D);
    snprintf(a, sizeof a, "%s", tc_path("a"));
    snprintf(fa, sizeof fa, "%s/final.h5", a);
    TC_MUST(NULL, "train %s --out %s", flags, a);
    cr_assert(strstr(tc_out, "frozen-prefix cache:") != NULL, "the cache should be on:\n%s",
              tc_out);
    /* 12 images, batch 4: 3 steps per epoch, 9 in all. */
    tc_csv *log = tc_csv_read(tc_path("a/log.csv"));
    cr_assert_eq(log->rows, 3);
    free(log);
    /* The cache pass says what it computes and shows its bar (the final line, off a terminal). */
    cr_expect(strstr(tc_out, "frozen-prefix cache: computing the frozen layers (up to ") != NULL,
              "%s", tc_out);
    cr_expect(strstr(tc_out, "[==============================] - ") != NULL, "%s", tc_out);
    /* Kept on disk: the same data and frozen weights read it back, and train the same. */
    snprintf(b, sizeof b, "%s", tc_path("from_disk"));
    TC_MUST(NULL, "train %s --out %s", flags, b);
    cr_expect(strstr(tc_out, "frozen-prefix cache: the frozen layers' output (up to ") != NULL &&
              strstr(tc_out, ") read from ") != NULL, "%s", tc_out);
    expect_same_run(a, b);
    /* A signal while it runs (or just after) stops the run, exit 130; the same command with
     * --resume continues it or starts it again, and the run is the uninterrupted one. */
    char args[1200];
    snprintf(b, sizeof b, "%s", tc_path("cache_signal"));
    snprintf(args, sizeof args, "train %s --out %s", flags, b);
    char *kept = getenv("CUTUNE_CACHE_DIR") ? strdup(getenv("CUTUNE_CACHE_DIR")) : NULL;
    cr_assert_eq(setenv("CUTUNE_CACHE_DIR", "off", 1), 0); /* the pass runs again */
    cr_expect_eq(run_and_terminate(args, "frozen-prefix cache: computing"), 130, "%s", tc_out);
    TC_MUST(NULL, "train %s --out %s --resume", flags, b);
    cr_assert_eq(kept != NULL ? setenv("CUTUNE_CACHE_DIR", kept, 1)
                              : unsetenv("CUTUNE_CACHE_DIR"), 0);
    free(kept);
    expect_same_run(a, b);

    /* Stopped in the last step of epoch 1 (before its validation and log row), then again
     * after 4 more steps: mid-epoch 3 (step 7). */
    snprintf(b, sizeof b, "%s", tc_path("twice"));
    interrupt_and_resume(flags, b, 3, (const int[]){3, 4}, 2, fa);
    expect_same_run(a, b);

    /* A finished 2-epoch run continued with --resume --epochs 3 is the 3-epoch run. */
    char two[1024];
    snprintf(two, sizeof two, "%s", flags);
    char *e = strstr(two, "--epochs 3");
    cr_assert_not_null(e);
    e[9] = '2';
    snprintf(b, sizeof b, "%s", tc_path("longer"));
    TC_MUST(NULL, "train %s --out %s", two, b);
    log = tc_csv_read(tc_path("longer/log.csv"));
    cr_assert_eq(log->rows, 2);
    free(log);
    TC_MUST(NULL, "train %s --out %s --resume", flags, b);
    expect_same_run(a, b);
}

/* Without validation data the log has epoch,acc,loss,lr: a resume after two epochs keeps their
 * rows as they were (they were once read back as five columns and rewritten shifted). */
Test(train_resume, without_validation) {
    char flags[1024], a[128], b[128], fa[600];
    snprintf(flags, sizeof flags,
             "--data %s/d/train " TC_SMALL " --head " TC_DROP_HEAD
             " --strategy head --optimizer adam --lr 0.01 --epochs 3 --verbose 2", D);
    snprintf(a, sizeof a, "%s", tc_path("a"));
    snprintf(fa, sizeof fa, "%s/final.h5", a);
    TC_MUST(NULL, "train %s --out %s", flags, a);
    char *log = tc_read(tc_path("a/log.csv"));
    cr_assert(log != NULL && strncmp(log, "epoch,acc,loss,lr\n", 18) == 0, "%s", log);
    free(log);
    snprintf(b, sizeof b, "%s", tc_path("b"));
    interrupt_and_resume(flags, b, 3, (const int[]){7}, 1, fa); /* mid-epoch 3 */
    expect_same_run(a, b);
}

/* 4 training images (2 per class) and 2 validation images, batch 2: 2 steps per epoch. */
#define FULL_FLAGS                                                                             \
    "--data %s/s/train --val %s/s/val --input-size 32 --batch-size 2 --weights none "          \
    "--device cpu --threads 1 --head " TC_DROP_HEAD " --strategy all --horizontal-flip "       \
    "--momentum 0.9 --nesterov --lr 0.001 --epochs 2 --verbose 2"

static void small_data(void) {
    cr_assert_eq(ct_demo_generate(tc_path("s"), 2, 32, 7), CT_OK, "%s", ct_last_error());
}

/* Runs `cutune train ARGS` and sends SIGTERM once the output shows `after`; returns the exit
 * code. */
static int run_and_terminate(const char *args, const char *after) {
    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        unsetenv("CUTUNE_STOP_AFTER_STEPS");
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec '%s' %s", getenv("CUTUNE_CLI"), args);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    bool sent = false;
    ssize_t got;
    while ((got = read(fd[0], tc_out + n, sizeof tc_out - 1 - n)) > 0) {
        n += (size_t)got;
        tc_out[n] = '\0';
        if (!sent && strstr(tc_out, after) != NULL) {
            kill(pid, SIGTERM);
            sent = true;
        }
    }
    close(fd[0]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(sent, "'%s' never appeared:\n%s", after, tc_out);
    cr_assert(WIFEXITED(status), "killed instead of exiting (status %d)", status);
    return WEXITSTATUS(status);
}

Test(train_resume, whole_network_with_augmentation, .timeout = 600) {
    small_data();
    char flags[1024], a[128], b[128];
    snprintf(flags, sizeof flags, FULL_FLAGS, D, D);
    snprintf(a, sizeof a, "%s", tc_path("a"));
    TC_MUST(NULL, "train %s --out %s", flags, a);
    cr_assert(strstr(tc_out, "frozen-prefix cache") == NULL, "no cache with augmentation:\n%s",
              tc_out);
    tc_csv *log = tc_csv_read(tc_path("a/log.csv"));
    cr_assert_eq(log->rows, 2);
    free(log);

    /* At the end of epoch 1 (step 2), then mid-epoch 2 (step 3). */
    char fa[600];
    snprintf(fa, sizeof fa, "%s/final.h5", a);
    snprintf(b, sizeof b, "%s", tc_path("twice"));
    interrupt_and_resume(flags, b, 2, (const int[]){2, 1}, 2, fa);
    expect_same_run(a, b);

    /* A real signal, whenever it lands in epoch 1 or 2: the handler finishes the step, writes
     * the checkpoint and exits 130, and the resumed run is still the uninterrupted one. */
    char args[1200];
    snprintf(b, sizeof b, "%s", tc_path("signal"));
    snprintf(args, sizeof args, "train %s --out %s", flags, b);
    int rc = run_and_terminate(args, "Epoch 1/2");
    cr_assert_eq(rc, 130, "exit %d after SIGTERM:\n%s", rc, tc_out);
    cr_expect(strstr(tc_out, "continue with --resume") != NULL, "%s", tc_out);
    TC_MUST(NULL, "train %s --out %s --resume", flags, b);
    expect_same_run(a, b);
}

/* The frozen-prefix cache is an optimisation only: the same batches, the same numbers. Batch 5
 * leaves a partial last batch; --strategy head caches the flatten output, top block4_pool's. */
Test(train_resume, feature_cache_changes_nothing) {
    const char *flags = "--data %s/d/train --val %s/d/val --input-size 32 --batch-size 5 "
                        "--weights none --device cpu --threads 1 --head " TC_DROP_HEAD
                        " --strategy %s --optimizer adam --lr 0.01 --epochs 1 --verbose 2";
    char f[1024];
    for (int k = 0; k < 2; k++) {
        const char *strategy = k == 0 ? "head" : "top";
        snprintf(f, sizeof f, flags, D, D, strategy);
        TC_MUST(NULL, "train %s --out %s/%s_cache", f, D, strategy);
        cr_assert(strstr(tc_out, "frozen-prefix cache:") != NULL, "%s", tc_out);
        TC_MUST(NULL, "train %s --out %s/%s_plain --no-feature-cache", f, D, strategy);
        cr_assert(strstr(tc_out, "frozen-prefix cache") == NULL, "%s", tc_out);
        char a[128], b[128];
        snprintf(a, sizeof a, "%s/%s_cache", D, strategy);
        snprintf(b, sizeof b, "%s/%s_plain", D, strategy);
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/log.csv", a);
        snprintf(pb, sizeof pb, "%s/log.csv", b);
        char *la = tc_read(pa), *lb = tc_read(pb);
        cr_expect_str_eq(lb, la, "--strategy %s: the cache changed the log", strategy);
        free(la);
        free(lb);
        snprintf(pa, sizeof pa, "%s/final.h5", a);
        snprintf(pb, sizeof pb, "%s/final.h5", b);
        TC_SAME_ARRAYS(pa, pb, 30);
    }
}

/* Where augmentation runs changes nothing: --augment-on device (the loader only decodes; the
 * backend's augment_standardize op draws and applies the transforms in the training step, from
 * staged raw batches) trains bit-identically to --augment-on loader (the worker threads do it),
 * for PNG folders (uint8 batches) and iceberg JSON (float batches with the incidence angle), and
 * a device-path run interrupted mid-epoch resumes to the same files. On the CPU backend both
 * paths run ct_augment_standardize_image; on CUDA the kernel is compared with it by
 * test_cuda_augment. */
#define AUG_FLAGS                                                                              \
    " --rotation-range 20 --width-shift-range 0.1 --height-shift-range 0.1 --zoom-range 0.2 " \
    "--shear-range 5 --horizontal-flip --vertical-flip --fill-mode reflect "

Test(train_resume, augment_on_device_changes_nothing, .timeout = 600) {
    small_data();
    char flags[1024], a[128], b[128];
    snprintf(flags, sizeof flags, FULL_FLAGS AUG_FLAGS "--channel-shift-range 10 "
             "--brightness-range 0.8,1.2", D, D);
    snprintf(a, sizeof a, "%s", tc_path("loader"));
    snprintf(b, sizeof b, "%s", tc_path("device"));
    TC_MUST(NULL, "train %s --augment-on loader --out %s", flags, a);
    cr_expect(strstr(tc_out, "augmentation: in the loader threads") != NULL, "%s", tc_out);
    /* The device path with every staged copy landing as late as the protocol allows (see
     * src/cpu/cpu.h), as asynchronous copies on a GPU may: a batch buffer given back to the
     * loader too early, or a slot read before it was acquired, would change the numbers. */
    cr_assert_eq(setenv("CUTUNE_CPU_LAZY_STAGING", "1", 1), 0);
    TC_MUST(NULL, "train %s --augment-on device --out %s", flags, b);
    cr_expect(strstr(tc_out, "augmentation: on the device") != NULL, "%s", tc_out);
    expect_same_run(a, b);

    /* Interrupted after the first step of epoch 1 and again mid-epoch 2, on the device path. */
    char fa[600], dev_flags[1100];
    snprintf(fa, sizeof fa, "%s/final.h5", a);
    snprintf(dev_flags, sizeof dev_flags, "%s --augment-on device", flags);
    snprintf(b, sizeof b, "%s", tc_path("device_resumed"));
    interrupt_and_resume(dev_flags, b, 2, (const int[]){1, 2}, 2, fa);
    expect_same_run(a, b);

    /* Iceberg: float batches and the auxiliary input through the staging slots. */
    const char *ice = "--data %s/d/iceberg_train.json --head iceberg --validation-split 0.25 "
                      "--batch-size 4 --weights none --device cpu --threads 1 --epochs 1 "
                      "--lr 0.001 --verbose 2" AUG_FLAGS;
    snprintf(flags, sizeof flags, ice, D);
    snprintf(a, sizeof a, "%s", tc_path("ice_loader"));
    snprintf(b, sizeof b, "%s", tc_path("ice_device"));
    TC_MUST(NULL, "train %s --augment-on loader --out %s", flags, a);
    TC_MUST(NULL, "train %s --augment-on device --out %s", flags, b);
    expect_same_run(a, b);
    cr_assert_eq(unsetenv("CUTUNE_CPU_LAZY_STAGING"), 0);

    TC_EXPECT(NULL, 2, "--augment-on 'gpu': expected auto, device or loader",
              "train %s --augment-on gpu --out %s", flags, tc_path("bad"));
}

/* `cutune train --out RUN_DIR --resume` with nothing else continues a run from its config.txt,
 * which records every setting by the flag's name and words (and so is a --config file too):
 * the run ends bit-identical to one never interrupted, without the pretrained weights file it
 * started from (the checkpoint holds every weight). A run recorded by cutune 0.2 (enums as
 * numbers, width_shift with width_shift_kind, preprocess_given) still resumes: see
 * train_parts' record tests. */
Test(train_resume, from_the_folder_alone, .timeout = 600) {
    small_data();
    char flags[1024], start[600], whole[128], part[128], again[128], w[128];
    snprintf(w, sizeof w, "%s", tc_path("pre/final.h5"));
    snprintf(start, sizeof start, "--data %s/s/train --val %s/s/val --input-size 32 "
             "--batch-size 2 --device cpu --threads 1 --head mri --strategy head --verbose 2",
             D, D);
    TC_MUST(NULL, "train %s --weights none --epochs 1 --out %s", start, tc_path("pre"));
    snprintf(flags, sizeof flags, "%s --weights %s --width-shift-range 3 --fill-mode reflect "
             "--preprocess tf --lr 0.0123456789 --patience 5 --horizontal-flip", start, w);
    snprintf(whole, sizeof whole, "%s", tc_path("whole"));
    snprintf(part, sizeof part, "%s", tc_path("part"));
    snprintf(again, sizeof again, "%s", tc_path("again"));
    TC_MUST(NULL, "train %s --epochs 2 --out %s", flags, whole);
    TC_MUST(NULL, "train %s --epochs 1 --out %s", flags, part);

    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/config.txt", part);
    char *text = tc_read(cfg);
    cr_assert_not_null(text);
    static const char *const lines[] = {"\npreprocess = tf\n", "\nfill_mode = reflect\n",
                                        "\nwidth_shift_range = 3\n", "\nhorizontal_flip = true\n",
                                        "\nlr = 0.012345679\n", "\nclass_mode = categorical\n",
                                        "\npatience = 5\n"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        cr_expect(strstr(text, lines[i]) != NULL, "no '%s' in\n%s", lines[i] + 1, text);
    free(text);
    /* config.txt as a --config file: the same run in another folder. */
    TC_MUST(NULL, "train --config %s --epochs 2 --out %s", cfg, again);
    expect_same_run(whole, again);

    cr_assert_eq(remove(w), 0);
    TC_MUST(NULL, "train --out %s --resume --epochs 2", part);
    cr_expect(strstr(tc_out, "weights: from ") != NULL, "%s", tc_out);
    expect_same_run(whole, part);
    TC_EXPECT(NULL, 2, "it has 'fill_mode = reflect', now 'fill_mode = wrap'",
              "train --out %s --resume --epochs 3 --fill-mode wrap", part);
}

/* Starts `cutune ARGS` with its output discarded; SIGKILLs it after `ms` milliseconds unless it
 * ended first. Returns whether it was killed (false: it finished, with exit code 0). */
static bool run_and_kill(const char *args, int ms) {
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec '%s' %s >/dev/null 2>&1", getenv("CUTUNE_CLI"), args);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    const struct timespec tick = {.tv_nsec = 5000000};
    int status = 0;
    for (int waited = 0; waited < ms; waited += 5) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "cutune %s failed on its own (status %d)", args, status);
            return false;
        }
        nanosleep(&tick, NULL);
    }
    kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status);
}

/* Milliseconds since some fixed moment. */
static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* kill -9 at 30 moments spread over runs (before the first checkpoint, while checkpoints and
 * weights are written, between them), each time followed by the same command with --resume:
 * the run always continues (a folder killed before its first checkpoint starts again), no file
 * is ever left corrupt, and every run ends bit-identical to one never interrupted. The moments
 * are a fixed sequence scaled to the uninterrupted run's time, so that kills land all over the
 * run on a fast machine as on a slow one; each kill in one folder gives the next process a
 * quarter of that time more, so every folder finishes however long start-up and the first
 * checkpoint take on a loaded machine. A run that finishes is checked and the next starts in
 * a new folder until 30 kills have landed. */
Test(train_resume, kill_9_anywhere_then_the_same_command_continues, .timeout = 900) {
    char flags[1024], a[128], run[128], args[1400];
    snprintf(flags, sizeof flags, CACHED_FLAGS, D, D);
    snprintf(a, sizeof a, "%s", tc_path("whole"));
    long t0 = now_ms();
    TC_MUST(NULL, "train %s --out %s", flags, a);
    const long whole_ms = now_ms() - t0;
    uint32_t x = 2463534242u; /* xorshift32 */
    int kills = 0;
    for (int k = 0; kills < 30; k++) {
        snprintf(run, sizeof run, "%s", tc_path("killed%d", k));
        int i = 0;
        for (; i < 20; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            /* A kill in the first milliseconds may come before the folder exists. */
            snprintf(args, sizeof args, "train %s --out %s%s", flags, run,
                     tc_exists(run) ? " --resume" : "");
            const long grace = (long)i * whole_ms / 4;
            if (!run_and_kill(args, 20 + (int)(grace + x % (uint32_t)(whole_ms / 2 + 1)))) break;
            kills++;
        }
        cr_assert_lt(i, 20, "%s never finished between kills", run);
        expect_same_run(a, run);
    }
}
