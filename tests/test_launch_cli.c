/* `--gpus N|LIST` as a user types it (src/cli/gpus.c, dist/launch.c): refused with a message on
 * a CPU-only build's train and bench, inside a launched rank, and for a malformed list; and
 * `cutune devices --gpus 2`, the launch check, which works on every build: two ranks meet at
 * the rendezvous on 127.0.0.1 and each prints its line. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cutune/cuda.h"
#include "dist/launch.h"
#include "util.h"

/* Runs `ENV cutune ARGS` (ENV: VAR=value words for the shell) like tu_cli. */
static int cli_env(const char *env, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "env -u RANK -u WORLD_SIZE %s '%s' %s", env, getenv("CUTUNE_CLI"),
             args);
    return tu_sh(cmd);
}

static void expect_env(const char *env, const char *args, int code, const char *text) {
    int rc = cli_env(env, args);
    cr_expect_eq(rc, code, "%s cutune %s: exit %d, expected %d:\n%s", env, args, rc, code, tu_out);
    cr_expect(strstr(tu_out, text) != NULL, "%s cutune %s: output lacks '%s':\n%s", env, args,
              text, tu_out);
}

Test(launch_cli, gpus_on_a_cpu_build_is_refused) {
    if (ct_cuda_compiled()) cr_skip_test("this build has CUDA: --gpus is accepted on train");
    const char *msg = "cutune was built without CUDA: --gpus starts one rank per GPU; on the CPU "
                      "launch ranks with mpirun";
    expect_env("", "train --gpus 2", 2, msg);
    expect_env("", "bench --gpus=2 --device cpu", 2, msg);
}

Test(launch_cli, malformed_gpus_are_refused) {
    expect_env("", "devices --gpus 0,0", 2, "--gpus 0,0: a device is listed twice");
    expect_env("", "devices --gpus -1", 2, "--gpus -1: not a number of GPUs");
    expect_env("", "devices --gpus x", 2, "--gpus x: not a number of GPUs");
    expect_env("", "devices --gpus 0", 2, "--gpus 0: zero GPUs");
    expect_env("", "devices --gpus 1,x", 2, "--gpus 1,x: each device is a whole number");
    expect_env("", "devices --gpus", 2, "--gpus needs a value");
    expect_env("RANK=1", "devices --gpus 2", 2, "--gpus inside a launched rank (RANK=1 is set)");
    expect_env("CUDA_VISIBLE_DEVICES=3", "devices --gpus 0,1", 2,
               "device 1 is not among the devices CUDA_VISIBLE_DEVICES=3 makes visible");
}

Test(launch_cli, devices_gpus_is_the_launch_check, .timeout = 60) {
    /* As `cutune devices` alone: exit 1 when a CUDA build finds no usable GPU (each rank says
     * why), after the rendezvous has run all the same. */
    const int code = ct_cuda_compiled() && !tu_gpu_usable() ? 1 : 0;
    expect_env("", "devices --gpus 2", code, "all 2 ranks arrived");
    cr_expect(strstr(tu_out, "rank 0 of 2 on ") != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, "rank 1 of 2 on ") != NULL, "%s", tu_out);
}

Test(launch_cli, a_failed_rank_stops_the_launch, .timeout = 60) {
    /* Every rank refuses the bad knob and exits 2; the launcher names the first and exits so. */
    expect_env("CUTUNE_RENDEZVOUS_TIMEOUT=soon", "devices --gpus 2", 2, "exited with status 2");
    cr_expect(strstr(tu_out, "CUTUNE_RENDEZVOUS_TIMEOUT='soon'") != NULL, "%s", tu_out);
}

Test(launch_cli, a_rank_without_its_peer_fails_naming_it, .timeout = 60) {
    int port = 0;
    cr_assert_eq(ct_launch_free_port(&port), CT_OK, "%s", ct_last_error());
    char env[200], where[64];
    snprintf(env, sizeof env, "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=%d "
             "CUTUNE_RENDEZVOUS_TIMEOUT=1", port);
    expect_env(env, "devices", 1, "rank 1 of 2 never arrived within 1 s");
    snprintf(env, sizeof env, "RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=%d "
             "CUTUNE_RENDEZVOUS_TIMEOUT=1", port);
    snprintf(where, sizeof where, "rank 0 at 127.0.0.1:%d refused", port);
    expect_env(env, "devices", 1, where);
    expect_env("RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1", "devices", 2,
               "MASTER_PORT is not set");
}
