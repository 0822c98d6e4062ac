/* Flag parsing for every command: --name VALUE or --name=VALUE, switches, and errors that say
 * which flag was wrong and why. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool cli_parse(const char *cmd, int argc, char **argv, const cli_flag *flags, int n_flags) {
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "cutune %s: unexpected argument '%s' (see cutune %s --help)\n", cmd,
                    arg, cmd);
            return false;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const cli_flag *f = NULL;
        for (int k = 0; k < n_flags; k++)
            if (strlen(flags[k].name) == len && strncmp(flags[k].name, name, len) == 0)
                f = &flags[k];
        if (f == NULL) {
            fprintf(stderr, "cutune %s: unknown flag '--%.*s' (see cutune %s --help)\n", cmd,
                    (int)len, name, cmd);
            return false;
        }
        if (!f->takes_value) {
            if (eq != NULL) {
                fprintf(stderr, "cutune %s: --%s takes no value\n", cmd, f->name);
                return false;
            }
            *f->value = "1";
        } else if (eq != NULL) {
            *f->value = eq + 1;
        } else if (i + 1 < argc) {
            *f->value = argv[++i];
        } else {
            fprintf(stderr, "cutune %s: --%s needs a value\n", cmd, f->name);
            return false;
        }
    }
    return true;
}

bool cli_int(const char *cmd, const char *name, const char *value, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "cutune %s: --%s: expected a whole number from %ld to %ld, not '%s'\n",
                cmd, name, lo, hi, value);
        return false;
    }
    *out = v;
    return true;
}

int cli_fail(const char *cmd, ct_status s) {
    fprintf(stderr, "cutune %s: %s\n", cmd, ct_last_error());
    return s == CT_EINVAL ? CLI_EXIT_USAGE : 1;
}
