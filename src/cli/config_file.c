/* `--config FILE`: `key = value` lines (# comments, blank lines, keys with dashes or
 * underscores) turned into "--key=value" arguments placed before the command line's, so flags
 * given on the command line win.
 *
 * Every line is checked on its own before any argument is built, so a message names the file
 * and the line: `run.cfg:3: --lr: expected a number from 0 to 10, not 'fast'`. What is not a
 * config file is refused whole: a NUL byte (binary content), a line over CLI_CONFIG_LINE_MAX
 * bytes, a file over CLI_CONFIG_MAX bytes, and a `config` key (files do not include files). A
 * bare key is a switch turned on; for a flag that takes a value it is an error, never a flag
 * that swallows the next argument. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CLI_CONFIG_MAX (1 << 20)
#define CLI_CONFIG_LINE_MAX 4095

/* The whole file, NUL-terminated, or NULL after printing why. */
static char *read_file(const char *cmd, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cutune %s: --config %s: cannot open: %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    char *text = malloc(CLI_CONFIG_MAX + 1);
    size_t n = text != NULL ? fread(text, 1, CLI_CONFIG_MAX + 1, f) : 0;
    const bool failed = ferror(f) != 0;
    const int err = errno;
    fclose(f);
    const char *why = text == NULL ? "out of memory"
                      : failed     ? strerror(err) /* e.g. a directory: fopen succeeds */
                      : n > CLI_CONFIG_MAX ? "larger than 1 MiB: not a config file"
                                           : NULL;
    if (why != NULL) {
        fprintf(stderr, "cutune %s: --config %s: cannot read: %s\n", cmd, path, why);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    *len = n;
    return text;
}

/* Refuses binary content and over-long lines, naming the first line at fault. */
static bool check_text(const char *cmd, const char *path, const char *text, size_t len) {
    int lineno = 1;
    size_t line_start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && text[i] == '\0') {
            fprintf(stderr, "cutune %s: %s:%d: holds a NUL byte: not a text config file\n", cmd,
                    path, lineno);
            return false;
        }
        if (i == len || text[i] == '\n') {
            if (i - line_start > CLI_CONFIG_LINE_MAX) {
                fprintf(stderr, "cutune %s: %s:%d: line longer than %d bytes\n", cmd, path,
                        lineno, CLI_CONFIG_LINE_MAX);
                return false;
            }
            lineno++;
            line_start = i + 1;
        }
    }
    return true;
}

/* One line's key and value, trimmed, in place; *value is NULL for a bare key. False for a
 * blank or comment line. */
static bool split_line(char *line, char **key, char **value) {
    char *p = line + strspn(line, " \t");
    p[strcspn(p, "\r")] = '\0';
    if (*p == '\0' || *p == '#') return false;
    char *eq = strchr(p, '=');
    char *end = eq != NULL ? eq : p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
    *value = NULL;
    if (eq != NULL) {
        char *v = eq + 1 + strspn(eq + 1, " \t");
        size_t n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) v[--n] = '\0';
        *value = v;
    }
    *end = '\0';
    *key = p;
    for (char *q = p; *q != '\0'; q++)
        if (*q == '_') *q = '-'; /* batch_size = 32, as in a Keras call */
    return true;
}

/* "--key=value" for a checked line; a bare key (a switch) becomes "--key=true". */
static char *line_argument(const char *key, const char *value) {
    size_t len = strlen(key) + (value != NULL ? strlen(value) : 4) + 4;
    char *arg = malloc(len);
    if (arg != NULL) snprintf(arg, len, "--%s=%s", key, value != NULL ? value : "true");
    return arg;
}

/* Every line of `text` checked and turned into an argument of out[*n...]. */
static bool parse_lines(const char *cmd, const char *path, char *text, cli_setting_check check,
                        char **out, int *n) {
    char why[1024];
    int lineno = 0;
    for (char *line = text, *next; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next != NULL) *next++ = '\0';
        lineno++;
        char *key, *value;
        if (!split_line(line, &key, &value)) continue;
        if (key[0] == '\0') {
            fprintf(stderr, "cutune %s: %s:%d: expected 'key = value'\n", cmd, path, lineno);
            return false;
        }
        if (strcmp(key, "config") == 0) {
            fprintf(stderr, "cutune %s: %s:%d: a config file cannot name another (config = ...): "
                    "give one --config\n", cmd, path, lineno);
            return false;
        }
        if (!check(key, value, why, sizeof why)) {
            fprintf(stderr, "cutune %s: %s:%d: %s\n", cmd, path, lineno, why);
            return false;
        }
        if ((out[*n] = line_argument(key, value)) == NULL) return false;
        (*n)++;
    }
    return true;
}

bool cli_config_args(const char *cmd, int argc, char **argv, cli_setting_check check,
                     int *argc_out, char ***argv_out) {
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0) path = argv[i] + 9;
    }
    size_t len = 0;
    char *text = NULL;
    if (path != NULL && ((text = read_file(cmd, path, &len)) == NULL ||
                         !check_text(cmd, path, text, len))) {
        free(text);
        return false;
    }
    int lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    char **out = malloc((size_t)(lines + argc + 1) * sizeof *out);
    int n = 0;
    bool ok = out != NULL && (text == NULL || parse_lines(cmd, path, text, check, out, &n));
    free(text);
    if (!ok) {
        if (out != NULL) cli_config_free(n, out, 0);
        return false;
    }
    for (int i = 0; i < argc; i++) out[n++] = argv[i];
    out[n] = NULL;
    *argc_out = n;
    *argv_out = out;
    return true;
}

void cli_config_free(int argc, char **argv, int orig_argc) {
    /* The first argc - orig_argc arguments came from the file and were allocated. */
    for (int i = 0; i < argc - orig_argc; i++) free(argv[i]);
    free(argv);
}
