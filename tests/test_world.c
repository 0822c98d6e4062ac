/* Which rank a process is (dist/world.h), from each launcher's environment: torchrun's
 * variables with their defaults, MPI's taking precedence, and every malformed value refused
 * with a message naming the variable and its value. Each Criterion test runs in its own
 * process, so the environment set here does not leak between tests. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dist/world.h"

static const char *const launch_vars[] = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
    "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID",
    "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE",
    "SLURM_TASKS_PER_NODE", "SLURM_NODEID"};

static void clean_env(void) {
    for (size_t i = 0; i < sizeof launch_vars / sizeof launch_vars[0]; i++)
        unsetenv(launch_vars[i]);
}

TestSuite(world, .init = clean_env);

Test(world, a_plain_process_is_rank_0_of_1) {
    ct_world w;
    cr_assert_eq(ct_world_detect(&w), CT_OK, "%s", ct_last_error());
    cr_expect_eq(w.launch, CT_LAUNCH_NONE);
    cr_expect(w.rank == 0 && w.size == 1 && w.local_rank == 0 && w.local_size == 1);
    cr_expect(w.host[0] != '\0');
}

/* Sets NAME=VALUE pairs (NULL-ended) in a clean environment and reads the world. */
static ct_world detect_with(const char *const *pairs) {
    clean_env();
    for (int i = 0; pairs[i] != NULL; i += 2) setenv(pairs[i], pairs[i + 1], 1);
    ct_world w;
    cr_assert_eq(ct_world_detect(&w), CT_OK, "%s", ct_last_error());
    return w;
}

Test(world, torchrun_environment) {
    const char *const env[] = {"RANK", "3", "WORLD_SIZE", "4", "LOCAL_RANK", "1",
                               "LOCAL_WORLD_SIZE", "2", "MASTER_ADDR", "gpu-a", "MASTER_PORT",
                               "29500", NULL};
    ct_world w = detect_with(env);
    cr_expect_eq(w.launch, CT_LAUNCH_ENV);
    cr_expect(w.rank == 3 && w.size == 4 && w.local_rank == 1 && w.local_size == 2);
    cr_expect_str_eq(w.master_addr, "gpu-a");
    cr_expect_eq(w.master_port, 29500);
    char buf[300];
    cr_expect(strstr(ct_world_describe(&w, buf, sizeof buf), "rank 3 of 4") != NULL, "%s", buf);
    cr_expect_str_eq(ct_launch_name(w.launch), "torchrun environment");
    /* torchrun's static rendezvous holds MASTER_PORT with its agent's store: the next port. */
    setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
    cr_assert_eq(ct_world_detect(&w), CT_OK, "%s", ct_last_error());
    cr_expect_eq(w.master_port, 29501);
    unsetenv("TORCHELASTIC_USE_AGENT_STORE");
}

Test(world, local_values_default_to_one_host) {
    const char *const env[] = {"RANK", "1", "WORLD_SIZE", "2", "MASTER_ADDR", "127.0.0.1",
                               "MASTER_PORT", "1234", NULL};
    ct_world w = detect_with(env);
    cr_expect(w.local_rank == 1 && w.local_size == 2);
}

Test(world, mpi_wins_over_torchrun) {
    const char *const env[] = {"RANK", "0", "WORLD_SIZE", "1", "OMPI_COMM_WORLD_RANK", "2",
                               "OMPI_COMM_WORLD_SIZE", "3", "OMPI_COMM_WORLD_LOCAL_RANK", "0",
                               NULL};
    ct_world w = detect_with(env);
    cr_expect_eq(w.launch, CT_LAUNCH_MPI);
    cr_expect(w.rank == 2 && w.size == 3 && w.local_rank == 0);
}

Test(world, slurm_step_of_several_tasks) {
    const char *const env[] = {"SLURM_PROCID", "5", "SLURM_NTASKS", "8", "SLURM_LOCALID", "1",
                               "SLURM_NODEID", "2", "SLURM_TASKS_PER_NODE", "2(x2),4", NULL};
    ct_world w = detect_with(env);
    cr_expect_eq(w.launch, CT_LAUNCH_MPI);
    cr_expect(w.rank == 5 && w.size == 8 && w.local_rank == 1 && w.local_size == 4);
    setenv("SLURM_NTASKS", "1", 1); /* one task: not a distributed launch */
    cr_assert_eq(ct_world_detect(&w), CT_OK, "%s", ct_last_error());
    cr_expect_eq(w.launch, CT_LAUNCH_NONE);
}

/* Sets NAME=VALUE pairs (NULL-ended) and expects CT_EINVAL with `text` in the message. */
static void expect_refused(const char *const *pairs, const char *text) {
    clean_env();
    for (int i = 0; pairs[i] != NULL; i += 2) setenv(pairs[i], pairs[i + 1], 1);
    ct_world w;
    cr_expect_eq(ct_world_detect(&w), CT_EINVAL, "accepted, expected '%s'", text);
    cr_expect(strstr(ct_last_error(), text) != NULL, "'%s' lacks '%s'", ct_last_error(), text);
}

Test(world, malformed_values_are_named) {
    const char *const bad_rank[] = {"RANK", "abc", "WORLD_SIZE", "2", NULL};
    const char *const big_rank[] = {"RANK", "2", "WORLD_SIZE", "2", NULL};
    const char *const no_size[] = {"RANK", "0", NULL};
    const char *const no_addr[] = {"RANK", "0", "WORLD_SIZE", "2", "MASTER_PORT", "1", NULL};
    const char *const no_port[] = {"RANK", "0", "WORLD_SIZE", "2", "MASTER_ADDR", "a", NULL};
    const char *const bad_port[] = {"RANK", "0", "WORLD_SIZE", "2", "MASTER_ADDR", "a",
                                    "MASTER_PORT", "70000", NULL};
    const char *const bad_local[] = {"RANK", "0", "WORLD_SIZE", "1", "LOCAL_RANK", "1", NULL};
    const char *const bad_mpi[] = {"OMPI_COMM_WORLD_RANK", "1x", NULL};
    expect_refused(bad_rank, "RANK=abc");
    expect_refused(big_rank, "RANK=2: not below WORLD_SIZE=2");
    expect_refused(no_size, "WORLD_SIZE is not");
    expect_refused(no_addr, "MASTER_ADDR is not set");
    expect_refused(no_port, "MASTER_PORT is not set");
    expect_refused(bad_port, "MASTER_PORT=70000");
    expect_refused(bad_local, "LOCAL_RANK=1: not below LOCAL_WORLD_SIZE=1");
    expect_refused(bad_mpi, "OMPI_COMM_WORLD_RANK=1x");
}
