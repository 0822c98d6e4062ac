/* `cutune train`: the seed workflows' fit_generator as one command. Its flags, their --help
 * lines and the keys of `--config FILE` all come from the library's settings table
 * (src/train/settings_table.h, ct_train_config_apply): flags carry Keras's names
 * (ImageDataGenerator, flow_from_directory, optimizers, callbacks) with dashes, a config file
 * writes the same keys as `key = value` lines, and the command line wins. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "train/run.h"

static void print_usage(void) {
    printf("usage: cutune train --data DIR|train.json --out RUN_DIR [flags]\n"
           "       cutune train --out RUN_DIR --resume [--epochs N]   (settings from config.txt)"
           "\n\n");
    ct_train_print_help(stdout);
    printf("\nRUN_DIR gets log.csv, curves.png, best.h5, final.h5, checkpoint.h5 and config.txt.\n"
           "Ctrl-C finishes the step, writes the checkpoint and exits 130; --resume continues.\n");
}

/* The flags as given, applied to `c` (the defaults) in the settings' own order; with --resume,
 * over the run's own record. */
static bool parse_config(int argc, char **argv, ct_train_config *c) {
    const int n = ct_train_settings_count();
    cli_flag *flags = calloc((size_t)n, sizeof *flags);
    const char **values = calloc((size_t)n, sizeof *values);
    const char **names = calloc((size_t)n, sizeof *names);
    bool ok = flags != NULL && values != NULL && names != NULL;
    for (int i = 0; ok && i < n; i++) {
        const ct_train_setting_info *s = ct_train_setting(i);
        flags[i] = (cli_flag){s->name, s->arg != NULL, &values[i]};
    }
    ok = ok && cli_parse("train", argc, argv, flags, n);
    int given = 0;
    const char *resume = NULL, *out = NULL;
    for (int i = 0; ok && i < n; i++)
        if (values[i] != NULL) {
            if (strcmp(flags[i].name, "resume") == 0) resume = values[i];
            if (strcmp(flags[i].name, "out") == 0) out = values[i];
            names[given] = flags[i].name;
            values[given++] = values[i];
        }
    if (ok && resume != NULL && out != NULL && ct_train_config_read_run(c, out) != CT_OK) {
        fprintf(stderr, "cutune train: %s\n", ct_last_error());
        ok = false;
    }
    if (ok && ct_train_config_apply(c, given, names, values) != CT_OK) {
        fprintf(stderr, "cutune train: %s\n", ct_last_error());
        ok = false;
    }
    free(flags);
    free(values);
    free(names);
    return ok;
}

/* A config file's line, checked as its flag would be: a known setting, a switch's word, or a
 * value the setting accepts on its own (combinations are checked with the command line's). */
static bool check_setting(const char *name, const char *value, char *why, size_t cap) {
    const ct_train_setting_info *s = NULL;
    for (int i = 0; i < ct_train_settings_count() && s == NULL; i++)
        if (strcmp(ct_train_setting(i)->name, name) == 0) s = ct_train_setting(i);
    bool on;
    if (s == NULL) snprintf(why, cap, "unknown flag '--%s' (see cutune train --help)", name);
    else if (s->arg == NULL && value != NULL && !cli_switch_word(value, &on))
        snprintf(why, cap, "--%s is a switch: give it alone, or = true / = false, not '%s'",
                 name, value);
    else if (s->arg != NULL && value == NULL)
        snprintf(why, cap, "--%s needs a value (%s = %s)", name, name, s->arg);
    else if (s->arg != NULL) {
        ct_train_config *scratch = NULL;
        ct_status st = ct_train_config_new(&scratch);
        if (st == CT_OK) st = ct_train_config_set(scratch, name, value);
        ct_train_config_free(scratch);
        if (st != CT_OK) snprintf(why, cap, "%s", ct_last_error());
        return st == CT_OK;
    } else
        return true;
    return false;
}

int cmd_train(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage();
            return 0;
        }
    int all_argc = 0;
    char **all_argv = NULL;
    if (!cli_config_args("train", argc, argv, check_setting, &all_argc, &all_argv))
        return CLI_EXIT_USAGE;
    ct_train_config *c = NULL;
    if (ct_train_config_new(&c) != CT_OK) return cli_fail("train", CT_ENOMEM);
    if (!parse_config(all_argc, all_argv, c)) {
        ct_train_config_free(c);
        cli_config_free(all_argc, all_argv, argc);
        return CLI_EXIT_USAGE;
    }
    ct_train_install_signal_handlers();
    ct_status s;
    if (c->folds > 0) {
        ct_folds_result *fr = malloc(sizeof *fr);
        s = fr == NULL ? ct_error(CT_ENOMEM, "cannot allocate the folds' results")
                       : ct_train_folds(c, c->folds, c->test, fr);
        free(fr);
    } else {
        ct_train_result res;
        s = ct_train(c, &res);
    }
    ct_train_config_free(c);
    cli_config_free(all_argc, all_argv, argc);
    if (s == CT_EINTR) {
        fprintf(stderr, "cutune train: %s\n", ct_last_error());
        return 130;
    }
    if (s != CT_OK) return cli_fail("train", s);
    return 0;
}
