/* Resolving `--weights imagenet` to the official Keras file on this machine, and loading a
 * weights spec ("imagenet" or a path) with the scope that suits the model's head.
 *
 * Places, in order: $CUTUNE_WEIGHTS (a file used as is, or a directory), ./weights/, the
 * weights/ folder of the cutune checkout the running executable belongs to (found by walking up
 * from the executable to a folder holding weights/fetch.sh), and ~/.keras/models/, where Keras
 * itself keeps the file. The file's name, MD5 and download folder are the backbone's
 * (model/backbones.c). When no place has it, it is downloaded as Keras's get_file does
 * (io/download.c) into ~/.keras/models/, or into $CUTUNE_WEIGHTS when that is a folder, from
 * Keras's URL or $CUTUNE_WEIGHTS_URL; CUTUNE_OFFLINE=1 turns the download off, and then the
 * message says how to fetch the file by hand. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomic.h"
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

/* The command that fetches the file by hand: "sh /path/weights/fetch.sh --full". */
static void fetch_command(const ct_backbone *bb, bool full, const char *checkout, char *buf,
                          size_t cap) {
    bool other = strcmp(bb->name, CT_BACKBONE_DEFAULT) != 0;
    if (checkout[0] != '\0')
        snprintf(buf, cap, "sh %s/weights/fetch.sh%s%s%s", checkout, full ? " --full" : "",
                 other ? " --backbone " : "", other ? bb->name : "");
    else
        snprintf(buf, cap, "sh weights/fetch.sh%s%s%s (in the cutune repository)",
                 full ? " --full" : "", other ? " --backbone " : "", other ? bb->name : "");
}

/* Where the download goes: the CUTUNE_WEIGHTS folder, else ~/.keras/models (created, as Keras
 * does). False when there is neither. */
static bool download_dir(const char *env, char *dir, size_t cap) {
    if (env != NULL) return snprintf(dir, cap, "%s", env) < (int)cap;
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0') return false;
    return snprintf(dir, cap, "%s/.keras/models", home) < (int)cap;
}

/* Downloads the file into `dir` (io/download.c); *path is where it is then. */
static ct_status download(const ct_backbone *bb, const ct_backbone_file *file, const char *dir,
                          const char *by_hand, char *path, size_t cap) {
    const char *base = ct_knob_weights_url();
    if (base == NULL) base = bb->url;
    char url[2048], dest[CT_WEIGHTS_PATH_MAX];
    size_t blen = strlen(base);
    snprintf(url, sizeof url, "%s%s%s", base, blen > 0 && base[blen - 1] == '/' ? "" : "/",
             file->name);
    int len = snprintf(dest, sizeof dest, "%s/%s", dir, file->name);
    if (len < 0 || (size_t)len >= sizeof dest || (size_t)len >= cap)
        return ct_error(CT_EINVAL, "%s: path too long", dir);
    ct_made_dirs made;
    ct_status s = ct_make_dirs(dir, &made);
    if (s != CT_OK)
        return ct_error(CT_EIO, "cannot create %s for the download of %s: %s. %s", dir, url,
                        ct_last_error(), by_hand);
    s = ct__download(url, dest, file->md5, by_hand, stderr);
    if (s != CT_OK) {
        ct_remove_made_dirs(dir, &made); /* unless a .part is kept there */
        return s;
    }
    memcpy(path, dest, (size_t)len + 1);
    return CT_OK;
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
    char fetch[PATH_MAX + 96], dir[PATH_MAX];
    fetch_command(bb, full, checkout, fetch, sizeof fetch);
    if (ct_knob_offline() || !download_dir(env, dir, sizeof dir))
        return ct_error(CT_ENOTFOUND, "ImageNet weights not found: %s is not in %s%s. Fetch it "
                        "(%g MB, needs internet) with: %s ; or download %s%s into one of those "
                        "folders, or set CUTUNE_WEIGHTS to the file", file->name, tried,
                        ct_knob_offline() ? " (CUTUNE_OFFLINE=1: nothing is downloaded)" : "",
                        file->mb, fetch, bb->url, file->name);
    char by_hand[sizeof tried + sizeof fetch + 256];
    snprintf(by_hand, sizeof by_hand, "ImageNet weights: %s (%g MB) is not in %s; put it into "
             "one of those folders by hand (%s fetches it), or set CUTUNE_WEIGHTS to the file.",
             file->name, file->mb, tried, fetch);
    return download(bb, file, dir, by_hand, path, cap);
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
