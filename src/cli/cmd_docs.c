/* `cutune docs man|bash-completion`: the man page (cutune.1) and the bash completion script,
 * written from the flags the commands themselves know, so that neither can drift from them.
 * `cutune train`'s flags come from the library's settings table (ct_train_setting), grouped as
 * its --help groups them; every other command's flags are read from its own --help text, which
 * is the usage string next to its flag array. The build runs this command to make the files
 * that `cmake --install` puts in share/man/man1/ and share/bash-completion/completions/. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* dup, dup2, fileno */
#endif
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "core/atomic.h"
#include "cutune/train.h"

#define DOC_MAX_FLAGS 128

/* A flag as the completion and the man page need it: its name without "--", and what its value
 * looks like in the help ("N", "sgd|adam|adamw"); "" for a switch. */
typedef struct doc_flag {
    char name[64];
    char arg[96];
} doc_flag;

/* One command: its --help text and the flags read from it (or, for train, from the table). */
typedef struct doc_command {
    const cli_command *cmd;
    char *help;                      /* what `cutune CMD --help` prints */
    doc_flag flags[DOC_MAX_FLAGS];   /* (n_flags) */
    int n_flags;
} doc_command;

/* What `cutune docs` writes, by the name its first argument gives (also what the completion
 * offers there). */
static const struct {
    const char *name;
    const char *what;
} outputs[] = {
    {"man", "the man page, cutune.1 (roff)"},
    {"bash-completion", "the bash completion script (source it, or install it as cutune)"},
};
#define N_OUTPUTS ((int)(sizeof outputs / sizeof outputs[0]))

static void print_usage(void) {
    printf("usage: cutune docs man|bash-completion [--out FILE]\n\n");
    for (int i = 0; i < N_OUTPUTS; i++) printf("  %-17s%s\n", outputs[i].name, outputs[i].what);
    printf("\nBoth are written from the commands' own flags (train's from the settings table), to\n"
           "standard output or, with --out, to FILE (replaced whole, or left as it was).\n");
}

/* ---- reading the commands' flags ---- */

/* What `cutune CMD --help` prints, read by pointing standard output at a temporary file while
 * the command runs: the help texts live next to each command's flag array, and this reads them
 * as a user sees them. NULL when the text cannot be captured. */
static char *capture_help(const cli_command *c) {
    FILE *tmp = tmpfile();
    if (tmp == NULL) return NULL;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved < 0 || dup2(fileno(tmp), STDOUT_FILENO) < 0) {
        if (saved >= 0) close(saved);
        fclose(tmp);
        return NULL;
    }
    char arg0[] = "--help";
    char *argv[] = {arg0, NULL};
    int rc = c->run(1, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    long size = ftell(tmp);
    char *text = rc == 0 && size > 0 ? malloc((size_t)size + 1) : NULL;
    if (text != NULL) {
        rewind(tmp);
        size_t got = fread(text, 1, (size_t)size, tmp);
        text[got] = '\0';
    }
    fclose(tmp);
    return text;
}

static doc_flag *find_flag(doc_command *d, const char *name, size_t len) {
    for (int i = 0; i < d->n_flags; i++)
        if (strlen(d->flags[i].name) == len && strncmp(d->flags[i].name, name, len) == 0)
            return &d->flags[i];
    return NULL;
}

/* Adds "--name" (len characters of name) once; returns the entry, or NULL when full. */
static doc_flag *add_flag(doc_command *d, const char *name, size_t len) {
    doc_flag *f = find_flag(d, name, len);
    if (f != NULL || d->n_flags == DOC_MAX_FLAGS || len == 0 || len >= sizeof f->name) return f;
    f = &d->flags[d->n_flags++];
    memcpy(f->name, name, len);
    f->name[len] = '\0';
    f->arg[0] = '\0';
    return f;
}

/* Reads the flags of one line of help. A flag is a "--name" token; a token one space after it
 * that is not a flag is its value ("--batch-size N"). In the usage paragraph (synopsis) the
 * brackets count as spaces and every flag of the line is read; in an option list ("  --data PATH
 *   class folders ...") reading stops at the first word that is neither a flag nor a value, so
 * the description's words are never taken for flags. */
static void scan_line(doc_command *d, const char *line, size_t n, bool synopsis) {
    doc_flag *pending = NULL;
    size_t i = 0;
    while (i < n) {
        size_t gap = 0;
        while (i < n && (line[i] == ' ' || (synopsis && (line[i] == '[' || line[i] == ']')))) {
            i++;
            gap++;
        }
        size_t start = i;
        while (i < n && line[i] != ' ' && !(synopsis && (line[i] == '[' || line[i] == ']'))) i++;
        const char *tok = line + start;
        size_t len = i - start;
        if (len == 0) break;
        if (len > 2 && tok[0] == '-' && tok[1] == '-') {
            size_t k = 2;
            while (k < len && (islower((unsigned char)tok[k]) || isdigit((unsigned char)tok[k]) ||
                               tok[k] == '-'))
                k++;
            pending = add_flag(d, tok + 2, k - 2);
            if (k < len) pending = NULL; /* "--verbose," or "--name=...": no value follows */
        } else if (tok[0] == '-') {
            pending = NULL; /* a short option ("-v,"): its long form follows */
        } else if (pending != NULL && gap == 1) {
            if (pending->arg[0] == '\0' && len < sizeof pending->arg) {
                memcpy(pending->arg, tok, len);
                pending->arg[len] = '\0';
            }
            pending = NULL;
        } else {
            pending = NULL;
            if (!synopsis) break;
        }
    }
}

/* The flags of a --help text: its usage paragraph (up to the first blank line), then every
 * indented line that starts with a flag. */
static void parse_help(doc_command *d) {
    bool synopsis = true;
    for (const char *p = d->help; *p != '\0';) {
        size_t n = strcspn(p, "\n");
        if (n == 0) synopsis = false;
        if (synopsis) {
            scan_line(d, p, n, true);
        } else if (n > 0 && p[0] == ' ') {
            size_t lead = strspn(p, " ");
            if (lead < n && p[lead] == '-') scan_line(d, p + lead, n - lead, false);
        }
        p += n + (p[n] == '\n');
    }
}

/* train's flags: the settings table itself, in its order. */
static void train_flags(doc_command *d) {
    for (int i = 0; i < ct_train_settings_count(); i++) {
        const ct_train_setting_info *s = ct_train_setting(i);
        if (s == NULL || s->name == NULL) continue;
        doc_flag *f = add_flag(d, s->name, strlen(s->name));
        if (f != NULL && s->arg != NULL) snprintf(f->arg, sizeof f->arg, "%s", s->arg);
    }
}

static void docs_free(doc_command *docs, int n) {
    for (int i = 0; docs != NULL && i < n; i++) free(docs[i].help);
    free(docs);
}

/* Every command's help and flags; NULL (after saying why) when a help text cannot be read. */
static doc_command *docs_collect(void) {
    doc_command *docs = calloc((size_t)cli_n_commands, sizeof *docs);
    if (docs == NULL) return NULL;
    for (int i = 0; i < cli_n_commands; i++) {
        doc_command *d = &docs[i];
        d->cmd = &cli_commands[i];
        d->help = capture_help(d->cmd);
        if (d->help == NULL) {
            fprintf(stderr, "cutune docs: cannot read `cutune %s --help`\n", d->cmd->name);
            docs_free(docs, cli_n_commands);
            return NULL;
        }
        if (strcmp(d->cmd->name, "train") == 0) train_flags(d);
        else parse_help(d);
    }
    return docs;
}

/* ---- the man page ---- */

/* Writes text for roff: backslashes and hyphens escaped (\- is the minus of a command line), and
 * a leading '.' or '\'' kept from being read as a request. */
static void roff_put(FILE *f, const char *s, size_t n) {
    if (n > 0 && (s[0] == '.' || s[0] == '\'')) fputs("\\&", f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\') fputs("\\e", f);
        else if (s[i] == '-') fputs("\\-", f);
        else fputc(s[i], f);
    }
}

static void roff_line(FILE *f, const char *s) {
    roff_put(f, s, strlen(s));
    fputc('\n', f);
}

/* A block of help text as printed, line for line (no filling). */
static void roff_verbatim(FILE *f, const char *text, size_t len) {
    fputs(".PP\n.RS 4\n.nf\n", f);
    for (size_t i = 0; i < len;) {
        size_t n = strcspn(text + i, "\n");
        if (n > len - i) n = len - i;
        roff_put(f, text + i, n);
        fputc('\n', f);
        i += n + 1;
    }
    fputs(".fi\n.RE\n", f);
}

/* The usage paragraph of a help text (up to its first blank line), and where the rest begins. */
static size_t usage_len(const char *help) {
    const char *blank = strstr(help, "\n\n");
    return blank != NULL ? (size_t)(blank - help) : strlen(help);
}

static void man_header(FILE *f) {
    fprintf(f, ".\\\" The cutune(1) man page, written by `cutune docs man` from the commands' "
               "flags.\n.TH CUTUNE 1 \"\" \"cutune %s\" \"User Commands\"\n.nh\n.SH NAME\n",
            CUTUNE_VERSION);
    fputs("cutune \\- ", f);
    roff_line(f, CLI_SUMMARY);
    fputs(".SH SYNOPSIS\n.B cutune\n.I COMMAND\n.RI [ FLAGS ]\n.br\n.B cutune\n.I COMMAND\n"
          ".B \\-\\-help\n.br\n.B cutune \\-\\-version\n.SH DESCRIPTION\n", f);
    fputs("cutune fine\\-tunes a Keras VGG16 or VGG19, pretrained on ImageNet, on class folders "
          "of images or on Kaggle's iceberg JSON, on NVIDIA GPUs (cuDNN) or on the CPU, and "
          "writes Keras\\-loadable weights. Its flags carry the names of the Keras arguments "
          "they stand for.\n.SH COMMANDS\n", f);
    for (int i = 0; i < cli_n_commands; i++) {
        fputs(".TP\n.B ", f);
        roff_line(f, cli_commands[i].name);
        roff_line(f, cli_commands[i].summary);
    }
}

/* The paragraph after the last blank line of a help text (train's closing note), without its
 * final newline; *len 0 when the text has a single paragraph. */
static const char *last_paragraph(const char *help, size_t *len) {
    const char *last = NULL;
    for (const char *p = strstr(help, "\n\n"); p != NULL; p = strstr(p + 2, "\n\n")) last = p + 2;
    *len = last != NULL && last - help > (ptrdiff_t)usage_len(help) + 2 ? strlen(last) : 0;
    while (*len > 0 && last[*len - 1] == '\n') (*len)--;
    return last;
}

/* train: its usage line, then every setting by group as the settings table lists them, then
 * the note that ends its --help. */
static void man_train(FILE *f, const doc_command *d) {
    fputs(".SH \"TRAIN FLAGS\"\n", f);
    roff_verbatim(f, d->help, usage_len(d->help));
    fputs(".PP\nEvery flag is also a key of a \\fB\\-\\-config\\fR file (\\fIkey\\fR = "
          "\\fIvalue\\fR lines; dashes or underscores); flags on the command line win.\n", f);
    for (int g = 0; g < CT_SETTINGS_GROUPS; g++) {
        fputs(".SS \"", f);
        const char *title = ct_train_settings_title((ct_train_settings_group)g);
        roff_put(f, title, strlen(title));
        fputs("\"\n", f);
        for (int i = 0; i < ct_train_settings_count(); i++) {
            const ct_train_setting_info *s = ct_train_setting(i);
            if (s == NULL || s->name == NULL || (int)s->group != g) continue;
            fputs(".TP\n\\fB\\-\\-", f);
            roff_put(f, s->name, strlen(s->name));
            fputs("\\fR", f);
            if (s->arg != NULL) {
                fputs(" \\fI", f);
                roff_put(f, s->arg, strlen(s->arg));
                fputs("\\fR", f);
            }
            fputc('\n', f);
            roff_line(f, s->help);
        }
    }
    size_t len;
    const char *note = last_paragraph(d->help, &len);
    if (len > 0) {
        fputs(".SS notes\n", f);
        roff_verbatim(f, note, len);
    }
}

static void man_other(FILE *f, const doc_command *d) {
    fputs(".SS \"cutune ", f);
    roff_put(f, d->cmd->name, strlen(d->cmd->name));
    fputs("\"\n", f);
    size_t len = strlen(d->help);
    while (len > 0 && d->help[len - 1] == '\n') len--;
    roff_verbatim(f, d->help, len);
}

static void write_man(FILE *f, const doc_command *docs) {
    man_header(f);
    for (int i = 0; i < cli_n_commands; i++)
        if (strcmp(docs[i].cmd->name, "train") == 0) man_train(f, &docs[i]);
    fputs(".SH \"OTHER COMMANDS\"\nWhat each prints for \\fB\\-\\-help\\fR.\n", f);
    for (int i = 0; i < cli_n_commands; i++)
        if (strcmp(docs[i].cmd->name, "train") != 0) man_other(f, &docs[i]);
    fprintf(f, ".SH \"EXIT STATUS\"\n.TP\n.B 0\nsuccess\n.TP\n.B 1\na failure: a file, the data, "
               "the device or a run\n.TP\n.B %d\na usage error: a bad flag, value or "
               "combination, named in the message\n.TP\n.B 130\n\\fBtrain\\fR was interrupted "
               "(Ctrl\\-C or SIGTERM) after writing its checkpoint; \\fB\\-\\-resume\\fR "
               "continues it\n.SH \"SEE ALSO\"\n\\fBcutune\\fR \\fICOMMAND\\fR "
               "\\fB\\-\\-help\\fR, and the README of the cutune sources.\n",
            CLI_EXIT_USAGE);
}

/* ---- the bash completion ---- */

/* Appends " word" (n characters) to words when it fits. */
static void add_word(char *words, size_t cap, const char *word, size_t n) {
    size_t used = strlen(words);
    if (used + n + 2 < cap)
        snprintf(words + used, cap - used, "%s%.*s", used ? " " : "", (int)n, word);
}

/* The words a value may take and whether file or folder names fit it, from how the help writes
 * the value: "sgd|adam|adamw" gives three words, "imagenet|none|FILE.h5" two words and files,
 * "hflip,vflip" the list and each item, "PATH" files, "RUN_DIR" folders; placeholders such as N
 * or SPEC, and forms such as "step:E:F", give nothing to offer. */
static void value_words(const char *arg, char *words, size_t cap, char *files) {
    words[0] = '\0';
    *files = 0;
    for (const char *p = arg; *p != '\0';) {
        size_t n = strcspn(p, "|");
        size_t word = strcspn(p, "|["); /* "cosine[:MIN]" offers cosine */
        bool lower = word > 0, dotted = false;
        for (size_t k = 0; k < word; k++) {
            if (!(islower((unsigned char)p[k]) || isdigit((unsigned char)p[k]) || p[k] == '_' ||
                  p[k] == '-' || p[k] == ','))
                lower = false;
            if (p[k] == '.' && k + 1 < word && isalnum((unsigned char)p[k + 1])) dotted = true;
        }
        if ((word == 3 && strncmp(p, "DIR", 3) == 0) ||
            (word == 7 && strncmp(p, "RUN_DIR", 7) == 0)) {
            if (*files == 0) *files = 'd';
        } else if (dotted || (word >= 4 && (strncmp(p, "PATH", 4) == 0 ||
                                             strncmp(p, "FILE", 4) == 0))) {
            *files = 'f';
        } else if (lower) {
            add_word(words, cap, p, word);
            for (size_t k = 0, item = 0; memchr(p, ',', word) != NULL && k <= word; k++)
                if (k == word || p[k] == ',') {
                    add_word(words, cap, p + item, k - item);
                    item = k + 1;
                }
        }
        p += n + (p[n] == '|');
    }
}

static void bash_command(FILE *f, const doc_command *d) {
    fprintf(f, "    %s)\n        flags='", d->cmd->name);
    for (int i = 0; i < d->n_flags; i++) fprintf(f, "%s--%s", i ? " " : "", d->flags[i].name);
    fputs("'\n", f);
    if (strcmp(d->cmd->name, "docs") == 0) {
        fputs("        positional='", f);
        for (int i = 0; i < N_OUTPUTS; i++) fprintf(f, "%s%s", i ? " " : "", outputs[i].name);
        fputs("'\n", f);
    }
    /* One arm per distinct completion, naming every flag whose value completes alike. */
    fputs("        case $prev in\n", f);
    char action[DOC_MAX_FLAGS][600];
    for (int i = 0; i < d->n_flags; i++) {
        char words[512], files;
        value_words(d->flags[i].arg, words, sizeof words, &files);
        char kind[16] = "";
        if (files != 0) snprintf(kind, sizeof kind, " files=%c", files);
        snprintf(action[i], sizeof action[i], "takes=1%s%s%s%s", words[0] ? " words='" : "",
                 words, words[0] ? "'" : "", kind);
    }
    for (int i = 0; i < d->n_flags; i++) {
        bool seen = d->flags[i].arg[0] == '\0';
        for (int j = 0; j < i && !seen; j++)
            seen = d->flags[j].arg[0] != '\0' && strcmp(action[i], action[j]) == 0;
        if (seen) continue;
        fputs("        ", f);
        for (int j = i; j < d->n_flags; j++)
            if (d->flags[j].arg[0] != '\0' && strcmp(action[i], action[j]) == 0)
                fprintf(f, "%s--%s", j > i ? "|" : "", d->flags[j].name);
        fprintf(f, ") %s ;;\n", action[i]);
    }
    fputs("        esac ;;\n", f);
}

static const char bash_head[] =
    "# bash completion for cutune, written by `cutune docs bash-completion` from the commands'\n"
    "# own flags: source it, or install it as share/bash-completion/completions/cutune.\n"
    "_cutune() {\n"
    "    local cur=${COMP_WORDS[COMP_CWORD]} prev='' cmd=${COMP_WORDS[1]:-}\n"
    "    local flags='' positional='' words='' files='' takes=''\n"
    "    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD-1]}\n"
    "    # --name=value reaches us split at '=': complete the value of --name.\n"
    "    if [[ $cur == = ]]; then\n"
    "        cur=''\n"
    "    elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then\n"
    "        prev=${COMP_WORDS[COMP_CWORD-2]}\n"
    "    fi\n"
    "    COMPREPLY=()\n"
    "    if ((COMP_CWORD == 1)); then\n"
    "        mapfile -t COMPREPLY < <(compgen -W '%s --help --version' -- \"$cur\")\n"
    "        return 0\n"
    "    fi\n"
    "    case $cmd in\n";

static const char bash_tail[] =
    "    *) return 0 ;;\n"
    "    esac\n"
    "    if [[ -n $takes ]]; then\n"
    "        [[ -n $words ]] && mapfile -t COMPREPLY < <(compgen -W \"$words\" -- \"$cur\")\n"
    "        if [[ $files == f ]]; then\n"
    "            mapfile -t -O ${#COMPREPLY[@]} COMPREPLY < <(compgen -f -- \"$cur\")\n"
    "        elif [[ $files == d ]]; then\n"
    "            mapfile -t -O ${#COMPREPLY[@]} COMPREPLY < <(compgen -d -- \"$cur\")\n"
    "        fi\n"
    "        [[ -n $files ]] && compopt -o filenames 2>/dev/null\n"
    "        return 0\n"
    "    fi\n"
    "    if [[ $cur == -* ]]; then\n"
    "        mapfile -t COMPREPLY < <(compgen -W \"$flags --help\" -- \"$cur\")\n"
    "    elif [[ -n $positional ]]; then\n"
    "        mapfile -t COMPREPLY < <(compgen -W \"$positional\" -- \"$cur\")\n"
    "    else\n"
    "        mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n"
    "        compopt -o filenames 2>/dev/null\n"
    "    fi\n"
    "    return 0\n"
    "}\n"
    "complete -F _cutune cutune\n";

static void write_bash(FILE *f, const doc_command *docs) {
    char names[512];
    size_t used = 0;
    names[0] = '\0';
    for (int i = 0; i < cli_n_commands && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? " " : "",
                                 cli_commands[i].name);
    fprintf(f, bash_head, names);
    for (int i = 0; i < cli_n_commands; i++) bash_command(f, &docs[i]);
    fputs(bash_tail, f);
}

/* ---- the command ---- */

int cmd_docs(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage();
            return 0;
        }
    int which = -1;
    for (int i = 0; argc > 0 && i < N_OUTPUTS; i++)
        if (strcmp(argv[0], outputs[i].name) == 0) which = i;
    if (which < 0) {
        fprintf(stderr, "cutune docs: which file? man or bash-completion (see cutune docs "
                        "--help)\n");
        return CLI_EXIT_USAGE;
    }
    const char *out = NULL;
    cli_flag flags[] = {{"out", true, &out}};
    if (!cli_parse("docs", argc - 1, argv + 1, flags, 1)) return CLI_EXIT_USAGE;
    doc_command *docs = docs_collect();
    if (docs == NULL) return 1;
    ct_atomic_file file;
    FILE *f = stdout;
    if (out != NULL) {
        ct_status s = ct_atomic_open(&file, out, "w");
        if (s != CT_OK) {
            docs_free(docs, cli_n_commands);
            return cli_fail("docs", s);
        }
        f = file.f;
    }
    if (which == 0) write_man(f, docs);
    else write_bash(f, docs);
    docs_free(docs, cli_n_commands);
    if (out != NULL) {
        ct_status s = ct_atomic_commit(&file);
        if (s != CT_OK) return cli_fail("docs", s);
    } else if (fflush(stdout) != 0) {
        fprintf(stderr, "cutune docs: cannot write to standard output\n");
        return 1;
    }
    return 0;
}
