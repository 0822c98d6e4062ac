/* Resolving `--weights imagenet` to the official Keras file on this machine, and loading a
 * weights spec ("imagenet" or a path) with the scope that suits the model's head.
 *
 * Places, in order: $CUTUNE_WEIGHTS (a file used as is, or a directory), ./weights/, the
 * weights/ folder of the cutune checkout the running executable belongs to (found by walking up
 * from the executable to a folder holding weights/fetch.sh), and ~/.keras/models/, where Keras
 * itself keeps the file. Nothing is downloaded here: the message says how to fetch it. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

#define URL_BASE "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The checkout the executable belongs to: the nearest ancestor of its folder that holds
 * weights/fetch.sh (build/cutune, build/tests/test_x, an installed copy finds none). */
static bool find_checkout(char *out, size_t cap) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(exe, '/');
        if (slash == NULL || slash == exe) return false;
        *slash = '\0';
        char probe[PATH_MAX + 32];
        snprintf(probe, sizeof probe, "%s/weights/fetch.sh", exe);
        if (is_file(probe)) {
            snprintf(out, cap, "%s", exe);
            return true;
        }
    }
    return false;
}

static bool try_path(const char *dir, const char *name, char *path, size_t cap, char *tried,
                     size_t tcap) {
    char p[CT_WEIGHTS_PATH_MAX];
    int len = snprintf(p, sizeof p, "%s/%s", dir, name);
    if (len < 0 || (size_t)len >= sizeof p) return false;
    size_t used = strlen(tried);
    if (used + strlen(dir) + 4 < tcap)
        snprintf(tried + used, tcap - used, "%s%s", used ? ", " : "", dir);
    if (!is_file(p) || (size_t)len >= cap) return false;
    memcpy(path, p, (size_t)len + 1);
    return true;
}

ct_status ct_weights_resolve_imagenet(bool full, char *path, size_t cap) {
    const char *name = full ? CT_IMAGENET_FULL : CT_IMAGENET_NOTOP;
    char tried[2048] = "";
    const char *env = getenv("CUTUNE_WEIGHTS");
    if (env != NULL && env[0] != '\0') {
        if (is_file(env)) {
            if (strlen(env) >= cap) return ct_error(CT_EINVAL, "CUTUNE_WEIGHTS is too long");
            snprintf(path, cap, "%s", env);
            return CT_OK;
        }
        if (!is_dir(env))
            return ct_error(CT_ENOTFOUND, "CUTUNE_WEIGHTS=%s is neither a file nor a directory",
                            env);
        if (try_path(env, name, path, cap, tried, sizeof tried)) return CT_OK;
    }
    if (try_path("weights", name, path, cap, tried, sizeof tried)) return CT_OK;
    char checkout[PATH_MAX] = "", wdir[PATH_MAX + 16];
    bool have_checkout = find_checkout(checkout, sizeof checkout);
    if (have_checkout) {
        snprintf(wdir, sizeof wdir, "%s/weights", checkout);
        if (try_path(wdir, name, path, cap, tried, sizeof tried)) return CT_OK;
    }
    const char *home = getenv("HOME");
    if (home != NULL && home[0] != '\0') {
        char kdir[PATH_MAX];
        snprintf(kdir, sizeof kdir, "%s/.keras/models", home);
        if (try_path(kdir, name, path, cap, tried, sizeof tried)) return CT_OK;
    }
    char fetch[PATH_MAX + 32];
    if (have_checkout) snprintf(fetch, sizeof fetch, "%s/weights/fetch.sh", checkout);
    else snprintf(fetch, sizeof fetch, "weights/fetch.sh (in the cutune repository)");
    return ct_error(CT_ENOTFOUND, "ImageNet weights not found: %s is not in %s. Fetch it (%s, "
                    "needs internet) with: sh %s%s ; or download " URL_BASE "%s into one of "
                    "those folders, or set CUTUNE_WEIGHTS to the file", name, tried,
                    full ? "553 MB" : "58.9 MB", fetch, full ? " --full" : "", name);
}

static bool has_layer(ct_model *m, const char *name, ct_layer_kind kind) {
    const ct_layer *l = ct_model_find(m, name);
    return l != NULL && l->kind == kind;
}

ct_status ct_weights_load_spec(ct_model *m, const char *spec, const ct_weights_load_opts *opts,
                               ct_weights_report *rep) {
    if (spec == NULL || spec[0] == '\0') return ct_error(CT_EINVAL, "no weights given");
    if (strcmp(spec, "imagenet") != 0) {
        ct_weights_load_opts o;
        ct_weights_load_defaults(&o);
        o.scope = CT_WEIGHTS_SCOPE_AUTO;
        return ct_weights_load(m, spec, opts != NULL ? opts : &o, rep);
    }
    bool full = has_layer(m, "fc1", CT_LAYER_DENSE) && has_layer(m, "fc2", CT_LAYER_DENSE) &&
                has_layer(m, "predictions", CT_LAYER_DENSE);
    char path[CT_WEIGHTS_PATH_MAX];
    ct_status s = ct_weights_resolve_imagenet(full, path, sizeof path);
    if (s != CT_OK) return s;
    ct_weights_load_opts o;
    ct_weights_load_defaults(&o);
    if (opts != NULL) {
        o.match = opts->match;
        o.dry_run = opts->dry_run;
    }
    o.scope = full ? CT_WEIGHTS_SCOPE_ALL : CT_WEIGHTS_SCOPE_BACKBONE;
    s = ct_weights_load(m, path, &o, rep);
    if (s == CT_OK) ct__report_note(rep, "ImageNet weights from %s.", path);
    return s;
}
