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
            /* A switch; --name=true|false also, as a config file writes it (Keras:
             * horizontal_flip=True), and false turns off what an earlier line turned on. */
            if (eq == NULL || is_word(eq + 1, "true") || is_word(eq + 1, "yes") ||
                strcmp(eq + 1, "1") == 0) {
                *f->value = "1";
            } else if (is_word(eq + 1, "false") || is_word(eq + 1, "no") ||
                       strcmp(eq + 1, "0") == 0) {
                *f->value = NULL;
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

bool cli_config_args(const char *cmd, int argc, char **argv, int *argc_out, char ***argv_out) {
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0) path = argv[i] + 9;
    }
    int cap = argc + 1, n = 0;
    char **out = malloc((size_t)cap * sizeof *out);
    if (out == NULL) return false;
    if (path != NULL) {
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            fprintf(stderr, "cutune %s: --config %s: cannot open: %s\n", cmd, path,
                    strerror(errno));
            free(out);
            return false;
        }
        char line[4096];
        int lineno = 0;
        while (fgets(line, sizeof line, f) != NULL) {
            lineno++;
            char *p = line;
            while (*p == ' ' || *p == '\t') p++;
            p[strcspn(p, "\r\n")] = '\0';
            if (*p == '\0' || *p == '#') continue;
            char *eq = strchr(p, '=');
            char *key_end = eq != NULL ? eq : p + strlen(p);
            while (key_end > p && (key_end[-1] == ' ' || key_end[-1] == '\t')) key_end--;
            const char *value = "";
            if (eq != NULL) {
                value = eq + 1;
                while (*value == ' ' || *value == '\t') value++;
            }
            if (key_end == p) {
                fprintf(stderr, "cutune %s: %s:%d: expected 'key = value'\n", cmd, path, lineno);
                fclose(f);
                cli_config_free(n, out, 0);
                return false;
            }
            size_t len = (size_t)(key_end - p) + strlen(value) + 4;
            char *arg = malloc(len);
            if (n + 1 >= cap) {
                char **grown = realloc(out, (size_t)(cap *= 2) * sizeof *out);
                if (grown != NULL) out = grown;
            }
            if (arg == NULL || n + 1 >= cap) {
                free(arg);
                fclose(f);
                cli_config_free(n, out, 0);
                return false;
            }
            /* Keys may be written with underscores, as in a Keras call: batch_size = 32. */
            snprintf(arg, len, "--%.*s%s%s", (int)(key_end - p), p, eq != NULL ? "=" : "", value);
            for (char *q = arg + 2; *q != '\0' && *q != '='; q++)
                if (*q == '_') *q = '-';
            out[n++] = arg;
        }
        bool failed = ferror(f) != 0;
        int err = errno;
        fclose(f);
        if (failed) {
            /* e.g. a directory: fopen succeeds, reading does not */
            fprintf(stderr, "cutune %s: --config %s: cannot read: %s\n", cmd, path,
                    strerror(err));
            cli_config_free(n, out, 0);
            return false;
        }
    }
    int from_file = n;
    char **grown = realloc(out, (size_t)(n + argc + 1) * sizeof *out);
    if (grown == NULL) {
        cli_config_free(n, out, 0);
        return false;
    }
    out = grown;
    for (int i = 0; i < argc; i++) out[n++] = argv[i];
    out[n] = NULL;
    *argc_out = n;
    *argv_out = out;
    (void)from_file;
    return true;
}

void cli_config_free(int argc, char **argv, int orig_argc) {
    /* The first argc - orig_argc arguments came from the file and were allocated. */
    for (int i = 0; i < argc - orig_argc; i++) free(argv[i]);
    free(argv);
}
