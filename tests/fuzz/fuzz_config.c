/* libFuzzer harness for `cutune train --config FILE`.
 *
 * Each input is written to a file in a private temporary folder and read exactly as the
 * command reads it: cli_config_args (src/cli/config_file.c) checks each `key = value` line with
 * cmd_train.c's check_setting and turns the lines into --key=value flags placed before the
 * command line's, and cmd_train.c's parse_config parses those against the settings table and
 * applies them with ct_train_config_apply. cmd_train.c is compiled into this program, so both
 * static functions are the command's own. The same flags
 * then go one by one through ct_train_config_set into a configuration that keeps copies of its
 * strings (ct_train_config_new: what bindings use), which is freed. Nothing is trained.
 * Failures are expected; crashes, leaks and sanitizer reports are not.
 *
 * Build: as in fuzz_image.c, target fuzz_config.
 * Run:   mkdir -p build-fuzz/corpus/config && build-fuzz/tests/fuzz/fuzz_config \
 *            -max_total_time=60 -close_fd_mask=2 build-fuzz/corpus/config build-fuzz/seeds/config
 * (-close_fd_mask=2 silences the command's messages about bad lines; reports still show.) */
#include "cli/cmd_train.c"

#include <stdint.h>

#include "fuzz_util.h"

/* "--key=value" or "--key" through the library's one-setting entry point. */
static void set_each(int n, char **args) {
    ct_train_config *c = NULL;
    if (ct_train_config_new(&c) != CT_OK) abort();
    for (int i = 0; i < n; i++) {
        char name[256];
        const char *eq = strchr(args[i] + 2, '=');
        const size_t len = eq != NULL ? (size_t)(eq - args[i] - 2) : strlen(args[i] + 2);
        if (len >= sizeof name) continue;
        memcpy(name, args[i] + 2, len);
        name[len] = '\0';
        (void)ct_train_config_set(c, name, eq != NULL ? eq + 1 : NULL);
    }
    (void)ct_train_config_check(c);
    ct_train_config_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char flag[] = "--config";
    char *argv[3] = {flag, (char *)fuzz_write_input(data, size, ".txt"), NULL};
    int all_argc = 0;
    char **all_argv = NULL;
    if (!cli_config_args("train", 2, argv, check_setting, &all_argc, &all_argv)) return 0;
    ct_train_config *c = NULL;
    if (ct_train_config_new(&c) != CT_OK) abort();
    (void)parse_config(all_argc, all_argv, c);
    ct_train_config_free(c);
    set_each(all_argc - 2, all_argv); /* the lines of the file, without --config FILE */
    cli_config_free(all_argc, all_argv, 2);
    return 0;
}
