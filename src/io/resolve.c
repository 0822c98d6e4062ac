/* Resolving `--weights imagenet` to the official Keras file on this machine, and loading a
 * weights spec ("imagenet" or a path) with the scope that suits the model's head.
 *
 * Places, in order: $CUTUNE_WEIGHTS (a file used as is, or a directory), ./weights/, the
 * weights/ folder of the cutune checkout the running executable belongs to (found by walking up
 * from the executable to a folder holding weights/fetch.sh), and ~/.keras/models/, where Keras
 * itself keeps the file. The file's name, size and download folder are the backbone's
 * (model/backbones.c). Nothing is downloaded here: the message says how to fetch it. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/knobs.h"
#include "../model/backbone.h"
#include "io.h"

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

/* Where the file may be, in order; *path is the first that holds it. */
static bool search_places(const char *name, char *path, size_t cap, char *tried, size_t tcap,
                          char *checkout, size_t ccap) {
    if (try_path("weights", name, path, cap, tried, tcap)) return true;
    char wdir[PATH_MAX + 16];
    if (find_checkout(checkout, ccap)) {
        snprintf(wdir, sizeof wdir, "%s/weights", checkout);
        if (try_path(wdir, name, path, cap, tried, tcap)) return true;
    }
    const char *home = getenv("HOME");
    if (home != NULL && home[0] != '\0') {
        char kdir[PATH_MAX];
        snprintf(kdir, sizeof kdir, "%s/.keras/models", home);
        if (try_path(kdir, name, path, cap, tried, tcap)) return true;
    }
    return false;
}

ct_status ct_weights_resolve_imagenet(const char *backbone, bool full, char *path, size_t cap) {
    const ct_backbone *bb;
    ct_status s = ct_backbone_lookup(backbone, &bb);
    if (s != CT_OK) return s;
    const ct_backbone_file *file = full ? &bb->full : &bb->notop;
    char tried[2048] = "";
    const char *env = ct_knob_weights();
    if (env != NULL) {
        if (is_file(env)) {
            if (strlen(env) >= cap) return ct_error(CT_EINVAL, "CUTUNE_WEIGHTS is too long");
            snprintf(path, cap, "%s", env);
            return CT_OK;
        }
        if (!is_dir(env))
            return ct_error(CT_ENOTFOUND, "CUTUNE_WEIGHTS=%s is neither a file nor a directory",
                            env);
        if (try_path(env, file->name, path, cap, tried, sizeof tried)) return CT_OK;
    }
    char checkout[PATH_MAX] = "";
    if (search_places(file->name, path, cap, tried, sizeof tried, checkout, sizeof checkout))
        return CT_OK;
    char fetch[PATH_MAX + 32], args[64];
    if (checkout[0] != '\0') snprintf(fetch, sizeof fetch, "%s/weights/fetch.sh", checkout);
    else snprintf(fetch, sizeof fetch, "weights/fetch.sh (in the cutune repository)");
    snprintf(args, sizeof args, "%s%s%s", full ? " --full" : "",
             strcmp(bb->name, CT_BACKBONE_DEFAULT) != 0 ? " --backbone " : "",
             strcmp(bb->name, CT_BACKBONE_DEFAULT) != 0 ? bb->name : "");
    return ct_error(CT_ENOTFOUND, "ImageNet weights not found: %s is not in %s. Fetch it (%g "
                    "MB, needs internet) with: sh %s%s ; or download %s%s into one of those "
                    "folders, or set CUTUNE_WEIGHTS to the file", file->name, tried, file->mb,
                    fetch, args, bb->url, file->name);
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
    ct_status s = ct_weights_resolve_imagenet(ct_model_backbone(m)->name, full, path, sizeof path);
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
