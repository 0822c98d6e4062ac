/* flow_from_directory's file list: class folders, a recursive walk in Python's sorted order, and
 * Keras's extension test.
 *
 * Keras lists classes with sorted(os.listdir(dir)) filtered by os.path.isdir (which follows
 * symlinks), then walks each class folder with sorted(os.walk(class, followlinks), key=root) and
 * sorted(files): every folder's files come together, folders in byte order of their full paths
 * (so "a/b-c" comes before "a/b/x"), files in byte order of their names. os.walk does not descend
 * into symlinked folders unless followlinks; symlinked files are files. This file reproduces
 * that order exactly. Where os.walk silently skips a folder it cannot read, cutune stops and
 * names it; with follow_links a folder reached twice (a symlink loop) is walked once. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "internal.h"

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static bool strvec_push(strvec *s, char *str) {
    if (str == NULL) return false;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, cap * sizeof *v);
        if (v == NULL) {
            free(str);
            return false;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    return true;
}

static void strvec_free(strvec *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static char *join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *p = malloc(na + nb + 2);
    if (p == NULL) return NULL;
    memcpy(p, a, na);
    p[na] = '/';
    memcpy(p + na + 1, b, nb + 1);
    return p;
}

/* Keras's test: fname.lower().endswith(('png', 'jpg', 'jpeg', 'bmp', 'ppm', 'tif', 'tiff')).
 * That is flow_from_directory's white_list_formats (keras/src/legacy/preprocessing/image.py),
 * the API of the seed workflows that this scan reproduces. Keras 3's
 * image_dataset_from_directory allows .bmp .gif .jpeg .jpg .png instead; cutune does not follow
 * it. Every extension counted here is decoded (decode.c): PNG, JPEG, BMP, PPM and TIFF. */
static bool is_image_name(const char *name) {
    static const char *const ext[] = {"png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t m = strlen(ext[i]);
        if (n >= m && strcasecmp(name + n - m, ext[i]) == 0) return true;
    }
    return false;
}

/* The names in a folder, unsorted, without "." and "..". */
static ct_status list_names(const char *path, strvec *out) {
    DIR *d = opendir(path);
    if (d == NULL) {
        int e = errno;
        if (e == ENOENT) return ct_error(CT_ENOTFOUND, "%s: no such folder", path);
        if (e == ENOTDIR) return ct_error(CT_EFORMAT, "%s: not a folder", path);
        return ct_error(CT_EIO, "%s: cannot read folder: %s", path, strerror(e));
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (!strvec_push(out, ct_data_strdup(de->d_name))) {
            closedir(d);
            return ct_error(CT_ENOMEM, "%s: out of memory listing the folder", path);
        }
    }
    int e = errno;
    closedir(d);
    if (e != 0) return ct_error(CT_EIO, "%s: cannot read folder: %s", path, strerror(e));
    return CT_OK;
}

/* One folder of a class walk: its path relative to the dataset root and its files. */
typedef struct walk_dir {
    char *path;   /* full path */
    char *rel;    /* relative to the dataset root: "cat/sub" */
    strvec files; /* names */
} walk_dir;

typedef struct walk {
    walk_dir *d;
    size_t n, cap;
    dev_t *dev; /* visited folders, with follow_links */
    ino_t *ino;
    size_t n_seen, cap_seen;
} walk;

static int cmp_dir(const void *a, const void *b) {
    return strcmp(((const walk_dir *)a)->path, ((const walk_dir *)b)->path);
}

static bool walk_add(walk *w, char *path, char *rel) {
    if (path == NULL || rel == NULL) {
        free(path);
        free(rel);
        return false;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        walk_dir *d = realloc(w->d, cap * sizeof *d);
        if (d == NULL) {
            free(path);
            free(rel);
            return false;
        }
        w->d = d;
        w->cap = cap;
    }
    memset(&w->d[w->n], 0, sizeof w->d[w->n]);
    w->d[w->n].path = path;
    w->d[w->n].rel = rel;
    w->n++;
    return true;
}

/* Records a folder's identity; false when it was seen already (a loop through symlinks). */
static bool walk_first_visit(walk *w, const struct stat *st, bool *oom) {
    for (size_t i = 0; i < w->n_seen; i++)
        if (w->dev[i] == st->st_dev && w->ino[i] == st->st_ino) return false;
    if (w->n_seen == w->cap_seen) {
        size_t cap = w->cap_seen ? w->cap_seen * 2 : 16;
        dev_t *dev = realloc(w->dev, cap * sizeof *dev);
        if (dev != NULL) w->dev = dev;
        ino_t *ino = realloc(w->ino, cap * sizeof *ino);
        if (ino != NULL) w->ino = ino;
        if (dev == NULL || ino == NULL) {
            *oom = true;
            return false;
        }
        w->cap_seen = cap;
    }
    w->dev[w->n_seen] = st->st_dev;
    w->ino[w->n_seen] = st->st_ino;
    w->n_seen++;
    return true;
}

static void walk_free(walk *w) {
    for (size_t i = 0; i < w->n; i++) {
        free(w->d[i].path);
        free(w->d[i].rel);
        strvec_free(&w->d[i].files);
    }
    free(w->d);
    free(w->dev);
    free(w->ino);
    memset(w, 0, sizeof *w);
}

/* Walks one class folder, appending its images (paths, Keras names, label) and its ignored
 * files to the store's vectors. */
static ct_status walk_class(const char *root, const char *class_name, int label, bool follow,
                            strvec *paths, strvec *names, int32_t **labels, size_t *n_labels,
                            size_t *cap_labels, strvec *ignored) {
    walk w = {0};
    ct_status s = CT_OK;
    char *top = join(root, class_name);
    if (!walk_add(&w, top, ct_data_strdup(class_name))) {
        s = ct_error(CT_ENOMEM, "out of memory walking %s/%s", root, class_name);
        goto done;
    }
    if (follow) {
        struct stat st;
        bool oom = false;
        if (stat(w.d[0].path, &st) == 0) walk_first_visit(&w, &st, &oom);
    }
    for (size_t i = 0; i < w.n; i++) {
        strvec entries = {0};
        if ((s = list_names(w.d[i].path, &entries)) != CT_OK) {
            strvec_free(&entries);
            goto done;
        }
        for (size_t k = 0; k < entries.n; k++) {
            char *full = join(w.d[i].path, entries.v[k]);
            if (full == NULL) {
                strvec_free(&entries);
                s = ct_error(CT_ENOMEM, "out of memory walking %s", w.d[i].path);
                goto done;
            }
            struct stat lst, st;
            bool is_link = lstat(full, &lst) == 0 && S_ISLNK(lst.st_mode);
            bool resolves = stat(full, &st) == 0;
            if (resolves && S_ISDIR(st.st_mode)) {
                /* os.walk lists it as a folder; it descends into a symlinked one only when
                 * following links. */
                bool oom = false;
                bool descend = follow ? walk_first_visit(&w, &st, &oom) : !is_link;
                if (oom) {
                    free(full);
                    strvec_free(&entries);
                    s = ct_error(CT_ENOMEM, "out of memory walking %s", w.d[i].path);
                    goto done;
                }
                if (descend) {
                    if (!walk_add(&w, full, join(w.d[i].rel, entries.v[k]))) {
                        strvec_free(&entries);
                        s = ct_error(CT_ENOMEM, "out of memory walking %s", w.d[i].path);
                        goto done;
                    }
                } else {
                    free(full);
                }
                continue;
            }
            free(full);
            /* A regular file, a symlink to one, or a broken symlink (Keras lists it and fails
             * when loading it; so does cutune). Devices, fifos and sockets are not images. */
            bool file_like = (resolves && S_ISREG(st.st_mode)) || (!resolves && is_link);
            char *name = entries.v[k];
            entries.v[k] = NULL;
            if (!file_like) {
                char *rel = join(w.d[i].rel, name);
                free(name);
                if (!strvec_push(ignored, rel)) {
                    strvec_free(&entries);
                    s = ct_error(CT_ENOMEM, "out of memory walking %s", w.d[i].path);
                    goto done;
                }
                continue;
            }
            if (!strvec_push(&w.d[i].files, name)) {
                strvec_free(&entries);
                s = ct_error(CT_ENOMEM, "out of memory walking %s", w.d[i].path);
                goto done;
            }
        }
        strvec_free(&entries);
    }
    qsort(w.d, w.n, sizeof *w.d, cmp_dir);
    for (size_t i = 0; i < w.n; i++) {
        walk_dir *d = &w.d[i];
        if (d->files.n > 1) qsort(d->files.v, d->files.n, sizeof *d->files.v, ct_data_strcmp_ptr);
        for (size_t k = 0; k < d->files.n; k++) {
            const char *f = d->files.v[k];
            if (!is_image_name(f)) {
                if (!strvec_push(ignored, join(d->rel, f))) goto oom;
                continue;
            }
            if (!strvec_push(paths, join(d->path, f)) || !strvec_push(names, join(d->rel, f)))
                goto oom;
            if (*n_labels == *cap_labels) {
                size_t cap = *cap_labels ? *cap_labels * 2 : 64;
                int32_t *l = realloc(*labels, cap * sizeof *l);
                if (l == NULL) goto oom;
                *labels = l;
                *cap_labels = cap;
            }
            (*labels)[(*n_labels)++] = label;
        }
    }
    goto done;
oom:
    s = ct_error(CT_ENOMEM, "out of memory listing %s/%s", root, class_name);
done:
    walk_free(&w);
    return s;
}

/* A dataset of every listed file, in order, made from the lists, which it takes (they are left
 * empty, and `labels` is the store's or freed): labelled by `labels` among `classes`, or
 * unlabelled (every label -1). */
static ct_status make_view(const char *root, strvec *classes, strvec *paths, strvec *names,
                           strvec *ignored, int32_t *labels, bool labelled, ct_role role,
                           ct_dataset **out) {
    ct_data_store *store = ct_data_store_new();
    size_t *all = NULL;
    if (store != NULL) {
        const size_t n = paths->n;
        store->in_memory = false;
        store->n_classes = (int)classes->n;
        store->class_names = classes->v;
        store->n = n;
        store->paths = paths->v;
        store->names = names->v;
        store->labels = labelled && labels != NULL ? labels : calloc(n > 0 ? n : 1, sizeof *labels);
        if (store->labels != labels) free(labels);
        labels = NULL;
        store->labelled = labelled;
        store->n_ignored = ignored->n;
        store->ignored = ignored->v;
        memset(classes, 0, sizeof *classes);
        memset(paths, 0, sizeof *paths);
        memset(names, 0, sizeof *names);
        memset(ignored, 0, sizeof *ignored);
        all = malloc((n > 0 ? n : 1) * sizeof *all);
    }
    ct_status s = CT_OK;
    if (store == NULL || store->labels == NULL || all == NULL)
        s = ct_error(CT_ENOMEM, "%s: out of memory listing the dataset", root);
    for (size_t i = 0; s == CT_OK && i < store->n; i++) {
        all[i] = i;
        if (!labelled) store->labels[i] = -1;
    }
    if (s == CT_OK) s = ct_data_view(store, all, store->n, role, out);
    free(all);
    free(labels);
    ct_data_store_unref(store);
    return s;
}

/* The folder a dataset is opened from, checked, without trailing slashes (os.path.join("data/",
 * "cat") is "data/cat"); malloc'd into *root. */
static ct_status open_root(const char *dir, char **root) {
    struct stat st;
    *root = NULL;
    if (stat(dir, &st) != 0) return ct_error(CT_ENOTFOUND, "%s: no such folder", dir);
    if (!S_ISDIR(st.st_mode)) return ct_error(CT_EFORMAT, "%s: not a folder", dir);
    if ((*root = ct_data_strdup(dir)) == NULL) return ct_error(CT_ENOMEM, "out of memory");
    for (size_t n = strlen(*root); n > 1 && (*root)[n - 1] == '/'; n--) (*root)[n - 1] = '\0';
    return CT_OK;
}

ct_status ct_dataset_open_folder(ct_dataset **out, const char *dir, const ct_folder_options *o) {
    *out = NULL;
    ct_folder_options defaults = {0};
    if (o == NULL) o = &defaults;
    char *root = NULL;
    ct_status opened = open_root(dir, &root);
    if (opened != CT_OK) return opened;

    strvec classes = {0}, paths = {0}, names = {0}, ignored = {0};
    int32_t *labels = NULL;
    size_t n_labels = 0, cap_labels = 0;
    ct_status s = CT_OK;
    if (o->classes != NULL && o->n_classes > 0) {
        for (int k = 0; k < o->n_classes; k++) {
            for (int j = 0; j < k; j++)
                if (strcmp(o->classes[j], o->classes[k]) == 0) {
                    s = ct_error(CT_EINVAL, "class '%s' is listed twice", o->classes[k]);
                    goto fail;
                }
            char *p = join(root, o->classes[k]);
            struct stat cst;
            bool ok = p != NULL && stat(p, &cst) == 0 && S_ISDIR(cst.st_mode);
            if (!ok) {
                s = ct_error(CT_ENOTFOUND, "%s: class folder not found", p ? p : o->classes[k]);
                free(p);
                goto fail;
            }
            free(p);
            if (!strvec_push(&classes, ct_data_strdup(o->classes[k]))) goto oom;
        }
    } else {
        strvec entries = {0};
        if ((s = list_names(root, &entries)) != CT_OK) {
            strvec_free(&entries);
            goto fail;
        }
        if (entries.n > 1) qsort(entries.v, entries.n, sizeof *entries.v, ct_data_strcmp_ptr);
        for (size_t i = 0; i < entries.n; i++) {
            char *p = join(root, entries.v[i]);
            struct stat cst;
            bool is_dir = p != NULL && stat(p, &cst) == 0 && S_ISDIR(cst.st_mode);
            free(p);
            if (!is_dir) continue;
            char *name = entries.v[i];
            entries.v[i] = NULL;
            if (!strvec_push(&classes, name)) {
                strvec_free(&entries);
                goto oom;
            }
        }
        strvec_free(&entries);
    }
    if (classes.n == 0) {
        s = ct_error(CT_EFORMAT, "%s: no class subfolders (expected %s/<class>/<image files>)",
                     root, root);
        goto fail;
    }
    for (size_t k = 0; k < classes.n; k++)
        if ((s = walk_class(root, classes.v[k], (int)k, o->follow_links, &paths, &names, &labels,
                            &n_labels, &cap_labels, &ignored)) != CT_OK)
            goto fail;

    s = make_view(root, &classes, &paths, &names, &ignored, labels, true, o->role, out);
    free(root);
    return s;
oom:
    s = ct_error(CT_ENOMEM, "%s: out of memory listing the dataset", root);
fail:
    strvec_free(&classes);
    strvec_free(&paths);
    strvec_free(&names);
    strvec_free(&ignored);
    free(labels);
    free(root);
    return s;
}

/* The image files directly in `root` (sorted) into paths/names with label -1; other entries that
 * are not folders into `ignored`; subfolder names into `subs` (sorted). */
static ct_status list_top(const char *root, strvec *paths, strvec *names, strvec *subs,
                          strvec *ignored) {
    strvec entries = {0};
    ct_status s = list_names(root, &entries);
    if (s == CT_OK && entries.n > 1)
        qsort(entries.v, entries.n, sizeof *entries.v, ct_data_strcmp_ptr);
    for (size_t i = 0; s == CT_OK && i < entries.n; i++) {
        char *full = join(root, entries.v[i]);
        struct stat st;
        bool resolves = full != NULL && stat(full, &st) == 0;
        bool ok;
        if (resolves && S_ISDIR(st.st_mode)) {
            free(full);
            ok = strvec_push(subs, ct_data_strdup(entries.v[i]));
        } else if (is_image_name(entries.v[i]) && (!resolves || S_ISREG(st.st_mode))) {
            ok = strvec_push(paths, full) && strvec_push(names, ct_data_strdup(entries.v[i]));
        } else {
            free(full);
            ok = strvec_push(ignored, ct_data_strdup(entries.v[i]));
        }
        if (!ok) s = ct_error(CT_ENOMEM, "%s: out of memory listing the folder", root);
    }
    strvec_free(&entries);
    return s;
}

ct_status ct_dataset_open_images(ct_dataset **out, const char *dir, const ct_folder_options *o) {
    *out = NULL;
    ct_folder_options defaults = {0};
    if (o == NULL) o = &defaults;
    char *root = NULL;
    ct_status s = open_root(dir, &root);
    if (s != CT_OK) return s;
    strvec classes = {0}, subs = {0}, paths = {0}, names = {0}, ignored = {0};
    int32_t *labels = NULL;
    size_t n_labels = 0, cap_labels = 0;
    s = list_top(root, &paths, &names, &subs, &ignored);
    for (size_t k = 0; s == CT_OK && k < subs.n; k++)
        s = walk_class(root, subs.v[k], -1, o->follow_links, &paths, &names, &labels, &n_labels,
                       &cap_labels, &ignored);
    strvec_free(&subs);
    if (s == CT_OK) {
        s = make_view(root, &classes, &paths, &names, &ignored, labels, false, o->role, out);
        labels = NULL;
    }
    strvec_free(&paths);
    strvec_free(&names);
    strvec_free(&ignored);
    free(labels);
    free(root);
    return s;
}
