/* Shared pieces of the command-line tool: flag parsing and error reporting. Only src/cli/ may
 * exit the process. */
#ifndef CUTUNE_CLI_H
#define CUTUNE_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "cutune/status.h"

#define CLI_EXIT_USAGE 2

/* A flag a command accepts: its name without "--", whether it takes a value, and where the
 * value (or "1" for a switch) is stored. */
typedef struct cli_flag {
    const char *name;
    bool takes_value;
    const char **value;
} cli_flag;

/* Parses argv against `flags`. Accepts --name VALUE and --name=VALUE; a switch also takes
 * --name=true|yes|1 (on) and --name=false|no|0 (off again: its value back to NULL), as config
 * files write them. Prints the problem and returns false on an unknown flag, a missing value
 * or a stray argument. */
bool cli_parse(const char *cmd, int argc, char **argv, const cli_flag *flags, int n_flags);

/* Converts a flag value, printing "cutune CMD: --NAME: ..." and returning false when it is not a
 * whole number in [lo, hi]. */
bool cli_int(const char *cmd, const char *name, const char *value, long lo, long hi, long *out);

/* Like cli_int for a real number in [lo, hi]. */
bool cli_double(const char *cmd, const char *name, const char *value, double lo, double hi,
                double *out);

/* Whether `v` is a switch's value: true, yes or 1 (*on) or false, no or 0 (case-insensitive). */
bool cli_switch_word(const char *v, bool *on);

/* Checks one setting of a config file: its flag name (dashes) and value (NULL: a bare key).
 * False with the reason in `why` ("--lr: expected a number ..."). */
typedef bool (*cli_setting_check)(const char *name, const char *value, char *why, size_t cap);

/* Reads `key = value` lines (# comments) from the --config file among argv into "--key=value"
 * arguments placed before the command line's, so flags given on the command line win; each
 * line is checked first with `check`, so errors name the file and line (config_file.c).
 * Returns false and prints why on an unreadable file, binary content or a bad line. *argv_out
 * is allocated; free with cli_config_free. */
bool cli_config_args(const char *cmd, int argc, char **argv, cli_setting_check check,
                     int *argc_out, char ***argv_out);
void cli_config_free(int argc, char **argv, int orig_argc);

/* Prints "cutune CMD: <last error>" to stderr and returns the exit code for the status. */
int cli_fail(const char *cmd, ct_status s);

/* `--gpus N|LIST` on train, bench or devices (gpus.c): when argv holds it, *handled is set and
 * the return value is the exit code of the launch (or of the refusal); otherwise 0. */
int cli_gpus_launch(int argc, char **argv, bool *handled);

int cmd_devices(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_advise(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_export_keras(int argc, char **argv);
int cmd_docs(int argc, char **argv);

/* What cutune is, in one line: the first line of `cutune --help` and the man page's NAME. */
#define CLI_SUMMARY "fine-tune an ImageNet VGG16 or VGG19 on small image datasets"

/* A command: its name, the function that runs it (argv after the name) and one line of help. */
typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cli_command;

/* Every command, in the order `cutune --help` lists them (main.c). */
extern const cli_command cli_commands[];
extern const int cli_n_commands;

#endif
