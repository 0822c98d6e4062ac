/* A run folder survives its users: one run at a time (a second is refused with the holder's
 * pid, while predict keeps reading the folder's models), a holder killed with SIGKILL leaves
 * nothing locked, a run stopped before its first checkpoint starts again by the same command
 * (with or without --resume), and temporary files of dead writers are removed. */
#include "train_cli_util.h"

#include <sys/wait.h>
#include <time.h>

TestSuite(run_folder, .init = tc_setup, .fini = tc_teardown, .timeout = 300);

/* The whole network trains (no frozen-prefix cache): a few seconds an epoch on two cores. */
#define LONG_FLAGS "--data %s/d/train " TC_SMALL " --head mri --strategy all --verbose 2"

/* Starts `cutune train ARGS` in the background, its output in OUT_FILE; returns its pid. */
static pid_t spawn_train(const char *args, const char *out_file) {
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "exec '%s' train %s >'%s' 2>&1", getenv("CUTUNE_CLI"), args,
                 out_file);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits (up to a minute) until `path` exists. */
static void wait_for(const char *path) {
    const struct timespec tick = {.tv_nsec = 50000000};
    for (int i = 0; i < 1200 && !tc_exists(path); i++) nanosleep(&tick, NULL);
    cr_assert(tc_exists(path), "%s never appeared", path);
}

Test(run_folder, one_run_at_a_time_and_a_killed_holder_frees_it) {
    char flags[1024], want[128];
    snprintf(flags, sizeof flags, LONG_FLAGS " --epochs 40 --out %s/run", D, D);
    pid_t first = spawn_train(flags, tc_path("first.txt"));
    wait_for(tc_path("run/best.h5")); /* an epoch has ended: a checkpoint exists */
    snprintf(want, sizeof want, "is in use by another cutune run (process %ld)", (long)first);
    TC_EXPECT(NULL, 2, want, "train %s", flags);
    TC_EXPECT(NULL, 2, want, "train %s --resume", flags);
    /* Readers take no lock. */
    TC_MUST(NULL, "predict --model %s --data %s/d/val --out %s --device cpu",
            tc_path("run/best.h5"), D, tc_path("preds.csv"));
    cr_assert_eq(kill(first, SIGKILL), 0);
    int status = 0;
    cr_assert_eq(waitpid(first, &status, 0), first);
    cr_assert(WIFSIGNALED(status), "the first run ended before it was killed");
    /* The kernel dropped the lock with the process: the same command continues the run. */
    snprintf(flags, sizeof flags, LONG_FLAGS " --epochs 2 --out %s/run --resume", D, D);
    TC_MUST(NULL, "train %s", flags);
    cr_expect(strstr(tc_out, "resuming") != NULL, "%s", tc_out);
}

/* What a run killed before its first checkpoint leaves in RUN_DIR: config.txt and the log's
 * header. */
static void stranded_run(const char *flags, const char *run) {
    TC_MUST(NULL, "train %s --out %s", flags, run);
    static const char *const saved[] = {"checkpoint.h5", "best.h5", "final.h5", "curves.png"};
    char path[700];
    for (size_t i = 0; i < sizeof saved / sizeof saved[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", run, saved[i]);
        remove(path);
    }
    snprintf(path, sizeof path, "%s/log.csv", run);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("epoch,acc,loss,lr\n", f);
    fclose(f);
}

Test(run_folder, a_run_stopped_before_its_first_checkpoint_starts_again) {
    char flags[1024], a[600], b[600];
    snprintf(flags, sizeof flags,
             "--data %s/d/train " TC_SMALL " --head mri --strategy head --epochs 1 --verbose 0",
             D);
    const char *again = "the run there stopped before its first checkpoint; starting it from "
                        "the beginning";
    snprintf(a, sizeof a, "%s", tc_path("again"));
    stranded_run(flags, a);
    TC_EXPECT(NULL, 0, again, "train %s --out %s", flags, a);
    cr_expect(tc_exists(tc_path("again/final.h5")));
    snprintf(b, sizeof b, "%s", tc_path("resumed"));
    stranded_run(flags, b);
    TC_EXPECT(NULL, 0, again, "train %s --out %s --resume", flags, b);
    tc_csv *log = tc_csv_read(tc_path("resumed/log.csv"));
    cr_expect_eq(log->rows, 1);
    free(log);
    /* A folder that never held a run is still no run to resume. */
    TC_EXPECT(NULL, 1, "no checkpoint to resume from", "train %s --resume --out %s/empty",
              flags, D);
}

Test(run_folder, temporary_files_of_dead_writers_are_removed) {
    char flags[1024];
    snprintf(flags, sizeof flags,
             "--data %s/d/train --out %s/run " TC_SMALL " --head mri --strategy head "
             "--verbose 0", D, D);
    TC_MUST(NULL, "train %s --epochs 1", flags);
    /* pid 4194303 is the largest Linux allows; nothing runs as it here. This process is
     * alive: its file stays. */
    char mine[256];
    snprintf(mine, sizeof mine, "run/.best.h5.tmp-%ld-abcdef", (long)getpid());
    const char *dead[] = {"run/.checkpoint.h5.tmp-4194303-Xy12ab", "run/log.csv.tmp-4194303"};
    const char *files[] = {dead[0], dead[1], mine};
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(tc_path("%s", files[i]), "w");
        cr_assert_not_null(f);
        fputs("partial", f);
        fclose(f);
    }
    TC_MUST(NULL, "train %s --epochs 2 --resume", flags);
    cr_expect(!tc_exists(tc_path("%s", dead[0])), "%s was kept", dead[0]);
    cr_expect(!tc_exists(tc_path("%s", dead[1])), "%s was kept", dead[1]);
    cr_expect(tc_exists(tc_path("%s", mine)), "a live writer's file was removed");
}

static ino_t inode(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
    return st.st_ino;
}

/* One copy of what two names share: final.h5 is best.h5's second name exactly when the last
 * epoch was the best; --keep-checkpoints K keeps checkpoint-<epoch>.h5 for the last K epochs
 * (checkpoint.h5 the latest of them); --save-best-only --keep-checkpoints 0 leaves best.h5 as the
 * only model file, and the folder still holds a finished run. */
Test(run_folder, lean_run_folders) {
    char flags[1024];
    snprintf(flags, sizeof flags, "--data %s/d/train --val %s/d/val " TC_SMALL " --head mri "
             "--strategy head --verbose 0 --epochs 3", D, D);
    TC_MUST(NULL, "train %s --out %s --keep-checkpoints 2", flags, tc_path("k2"));
    cr_expect(!tc_exists(tc_path("k2/checkpoint-1.h5")));
    cr_expect(tc_exists(tc_path("k2/checkpoint-2.h5")));
    cr_expect_eq(inode(tc_path("k2/checkpoint-3.h5")), inode(tc_path("k2/checkpoint.h5")));
    cr_expect_neq(inode(tc_path("k2/checkpoint-2.h5")), inode(tc_path("k2/checkpoint.h5")));
    tc_csv *log = tc_csv_read(tc_path("k2/log.csv"));
    const int col = tc_col(log, "val_loss");
    const bool last_best = log->v[2][col] < log->v[0][col] && log->v[2][col] < log->v[1][col];
    free(log);
    cr_expect_eq(inode(tc_path("k2/final.h5")) == inode(tc_path("k2/best.h5")), last_best,
                 "final.h5 and best.h5 share a file exactly when the last epoch is the best");
    /* Restored by EarlyStopping from best.h5: the same weights, one file. */
    TC_MUST(NULL, "train %s --out %s --patience 0 --restore-best-weights --monitor acc",
            flags, tc_path("es"));
    if (strstr(tc_out, "Restoring model weights") != NULL)
        cr_expect_eq(inode(tc_path("es/final.h5")), inode(tc_path("es/best.h5")));

    TC_MUST(NULL, "train %s --out %s --save-best-only --keep-checkpoints 0", flags,
            tc_path("lean"));
    cr_expect(tc_exists(tc_path("lean/best.h5")));
    cr_expect(!tc_exists(tc_path("lean/final.h5")) && !tc_exists(tc_path("lean/checkpoint.h5")));
    TC_EXPECT(NULL, 2, "already holds a run", "train %s --out %s --save-best-only "
              "--keep-checkpoints 0", flags, tc_path("lean"));
    TC_EXPECT(NULL, 1, "the run finished with --keep-checkpoints 0: start a new run",
              "train --out %s --resume --epochs 4", tc_path("lean"));
    cr_expect(tc_exists(tc_path("lean/best.h5")), "best.h5 must survive");
}
