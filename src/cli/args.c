/* Flag parsing for every command: --name VALUE or --name=VALUE, switches, and errors that say
 * which flag was wrong and why. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Case-insensitive whole-word match. */
static bool is_word(const char *s, const char *word) {
    for (; *s != '\0' && *word != '\0'; s++, word++)
        if (tolower((unsigned char)*s) != *word) return false;
    return *s == '\0' && *word == '\0';
}

bool cli_switch_word(const char *v, bool *on) {
    *on = is_word(v, "true") || is_word(v, "yes") || strcmp(v, "1") == 0;
    return *on || is_word(v, "false") || is_word(v, "no") || strcmp(v, "0") == 0;
}

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
        bool on = true;
        if (!f->takes_value) {
            /* A switch; --name=true|false also, as a config file writes it (Keras:
             * horizontal_flip=True), and false turns off what an earlier line turned on. */
            if (eq == NULL || cli_switch_word(eq + 1, &on)) {
                *f->value = on ? "1" : NULL;
            } else {
                fprintf(stderr, "cutune %s: --%s is a switch: give it alone, or =true / =false, "
                        "not '%s'\n", cmd, f->name, eq + 1);
                return false;
            }
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

bool cli_double(const char *cmd, const char *name, const char *value, double lo, double hi,
                double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (errno != 0 || end == value || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "cutune %s: --%s: expected a number from %g to %g, not '%s'\n", cmd, name,
                lo, hi, value);
        return false;
    }
    *out = v;
    return true;
}

