/* flow_from_directory's file list: sorted classes (hidden and symlinked ones too), the recursive
 * walk in Python's sorted(os.walk) order, Keras's extension test, symlinks and follow_links,
 * ignored files, the validation split (Keras's first-fraction rule with int() rounding, and the
 * seeded stratified one), subsets, and every bad folder. Files are empty here: scanning never
 * opens them. */
#include "test_data_util.h"

#include "data/data.h"

static char *tmp;
static void setup(void) { tmp = td_tmpdir(); }
static void teardown(void) {
    td_rmrf(tmp);
    tmp = NULL;
}
TestSuite(data_folder, .init = setup, .fini = teardown, .timeout = 60);

static void touch(const char *rel) { td_write(td_path(tmp, rel), "", 0); }

static void link_to(const char *target, const char *rel) {
    cr_assert_eq(symlink(target, td_path(tmp, rel)), 0, "symlink %s: %s", rel, strerror(errno));
}

static void make_tree(void) {
    mkdir(td_path(tmp, "root/c_empty/x"), 0755); /* td_path creates root/c_empty */
    rmdir(td_path(tmp, "root/c_empty/x"));
    mkdir(td_path(tmp, "root/.ipynb_checkpoints/x"), 0755);
    rmdir(td_path(tmp, "root/.ipynb_checkpoints/x"));
    touch("root/a_class/one.png");
    touch("root/a_class/two.jpg");
    static const char *const b[] = {"z.png",       "a.PNG",     "m.jpeg",      "n.JpG",
                                    "notes.txt",   "README",    "x.tiff",      "photo_png",
                                    ".hidden.png", "sub/c.png", "sub-x/d.png", "sub/deeper/e.png",
                                    "q.bmp",       "r.PpM",     "s.Tif"};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "root/b_class/%s", b[i]);
        touch(rel);
    }
    link_to("../a_class", "root/b_class/linkdir");
    link_to("../a_class/one.png", "root/b_class/linkfile.png");
    touch("root/file_at_root.png"); /* not in a class folder: not listed */
}

static void expect_names(const ct_dataset *ds, const char *const *want, size_t n) {
    cr_assert_eq(ct_dataset_count(ds), n, "%zu samples, expected %zu", ct_dataset_count(ds), n);
    for (size_t i = 0; i < n; i++)
        cr_expect_str_eq(ct_dataset_name(ds, i), want[i], "sample %zu: %s, expected %s", i,
                         ct_dataset_name(ds, i), want[i]);
}

Test(data_folder, classes_and_walk_order_match_keras) {
    make_tree();
    ct_dataset *ds = NULL;
    char root[4096];
    snprintf(root, sizeof root, "%s/root/", tmp); /* a trailing slash changes nothing */
    cr_assert_eq(ct_dataset_open_folder(&ds, root, NULL), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_dataset_num_classes(ds), 4);
    static const char *const classes[] = {".ipynb_checkpoints", "a_class", "b_class", "c_empty"};
    for (int k = 0; k < 4; k++) cr_expect_str_eq(ct_dataset_class_name(ds, k), classes[k]);
    /* Folders by full path ("sub" < "sub-x" < "sub/deeper"), files by name, endswith test. */
    static const char *const names[] = {
        "a_class/one.png",         "a_class/two.jpg",      "b_class/.hidden.png",
        "b_class/a.PNG",           "b_class/linkfile.png", "b_class/m.jpeg",
        "b_class/n.JpG",           "b_class/photo_png",    "b_class/q.bmp",
        "b_class/r.PpM",           "b_class/s.Tif",        "b_class/x.tiff",
        "b_class/z.png",           "b_class/sub/c.png",    "b_class/sub-x/d.png",
        "b_class/sub/deeper/e.png"};
    expect_names(ds, names, sizeof names / sizeof names[0]);
    cr_expect_eq(ct_dataset_label(ds, 0), 1);
    cr_expect_eq(ct_dataset_label(ds, 15), 2);
    cr_expect_eq(ct_dataset_class_count(ds, 0), 0);
    cr_expect_eq(ct_dataset_class_count(ds, 1), 2);
    cr_expect_eq(ct_dataset_class_count(ds, 2), 14);
    cr_expect_eq(ct_dataset_class_count(ds, 3), 0);
    cr_expect(ct_dataset_labelled(ds) && ct_dataset_aux_dim(ds) == 0);
    cr_expect(!ct_dataset_in_memory(ds, NULL, NULL, NULL));
    char path[4096];
    snprintf(path, sizeof path, "%s/root/b_class/sub/c.png", tmp);
    cr_expect_str_eq(ct_dataset_path(ds, 13), path);
    cr_assert_eq(ct_dataset_ignored_count(ds), 2);
    cr_expect_str_eq(ct_dataset_ignored(ds, 0), "b_class/README");
    cr_expect_str_eq(ct_dataset_ignored(ds, 1), "b_class/notes.txt");
    char msg[128];
    ct_dataset_found_message(ds, msg, sizeof msg);
    cr_expect_str_eq(msg, "Found 16 images belonging to 4 classes.");
    ct_dataset_free(ds);
}

Test(data_folder, follow_links_descends_once) {
    make_tree();
    link_to(".", "root/a_class/self"); /* a loop: walked once */
    ct_dataset *ds = NULL;
    char root[4096];
    snprintf(root, sizeof root, "%s/root", tmp);
    ct_folder_options o = {.follow_links = true};
    cr_assert_eq(ct_dataset_open_folder(&ds, root, &o), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_dataset_class_count(ds, 1), 2, "the loop must not repeat a_class");
    cr_expect_eq(ct_dataset_class_count(ds, 2), 16);
    bool seen = false;
    for (size_t i = 0; i < ct_dataset_count(ds); i++)
        if (strcmp(ct_dataset_name(ds, i), "b_class/linkdir/two.jpg") == 0) {
            seen = true;
            cr_expect_str_eq(ct_dataset_name(ds, i - 1), "b_class/linkdir/one.png");
            cr_expect_str_eq(ct_dataset_name(ds, i + 1), "b_class/sub/c.png");
        }
    cr_expect(seen, "the symlinked folder was not walked");
    ct_dataset_free(ds);
}

Test(data_folder, explicit_classes_and_errors) {
    make_tree();
    char root[4096];
    snprintf(root, sizeof root, "%s/root", tmp);
    const char *const pick[] = {"b_class", "a_class"};
    ct_folder_options o = {.classes = pick, .n_classes = 2};
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open_folder(&ds, root, &o), CT_OK, "%s", ct_last_error());
    cr_expect_str_eq(ct_dataset_class_name(ds, 0), "b_class");
    cr_expect_eq(ct_dataset_label(ds, 0), 0);
    cr_expect_str_eq(ct_dataset_name(ds, 0), "b_class/.hidden.png");
    ct_dataset_free(ds);
    const char *const missing[] = {"a_class", "zebra"};
    o.classes = missing;
    cr_expect_eq(ct_dataset_open_folder(&ds, root, &o), CT_ENOTFOUND);
    cr_expect(strstr(ct_last_error(), "zebra: class folder not found") != NULL, "%s",
              ct_last_error());
    const char *const twice[] = {"a_class", "a_class"};
    o.classes = twice;
    cr_expect_eq(ct_dataset_open_folder(&ds, root, &o), CT_EINVAL);

    char path[4096];
    snprintf(path, sizeof path, "%s/nope", tmp);
    cr_expect_eq(ct_dataset_open_folder(&ds, path, NULL), CT_ENOTFOUND);
    cr_expect(strstr(ct_last_error(), path) != NULL, "%s", ct_last_error());
    snprintf(path, sizeof path, "%s/root/file_at_root.png", tmp);
    cr_expect_eq(ct_dataset_open_folder(&ds, path, NULL), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "not a folder") != NULL, "%s", ct_last_error());
    mkdir(td_path(tmp, "flat/x"), 0755);
    rmdir(td_path(tmp, "flat/x"));
    touch("flat/img.png");
    snprintf(path, sizeof path, "%s/flat", tmp);
    cr_expect_eq(ct_dataset_open_folder(&ds, path, NULL), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "no class subfolders") != NULL, "%s", ct_last_error());
    cr_expect_null(ds);
}

Test(data_folder, unreadable_folder_is_named) {
    if (geteuid() == 0) {
        teardown(); /* a skipped test does not reach .fini */
        cr_skip_test("running as root: permissions cannot make a folder unreadable");
    }
    touch("root/a/one.png");
    touch("root/b/locked/two.png");
    char locked[4096], root[4096];
    snprintf(locked, sizeof locked, "%s/root/b/locked", tmp);
    snprintf(root, sizeof root, "%s/root", tmp);
    chmod(locked, 0);
    ct_dataset *ds = NULL;
    cr_expect_eq(ct_dataset_open_folder(&ds, root, NULL), CT_EIO);
    cr_expect(
        strstr(ct_last_error(), locked) != NULL && strstr(ct_last_error(), "cannot read") != NULL,
        "%s", ct_last_error());
    chmod(locked, 0755);
}

/* Four classes of 10, 7, 3 and 1 files. */
static ct_dataset *split_tree(void) {
    static const int sizes[4] = {10, 7, 3, 1};
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < sizes[k]; i++) {
            char rel[64];
            snprintf(rel, sizeof rel, "s/c%d/f%02d.png", k, i);
            touch(rel);
        }
    char root[4096];
    snprintf(root, sizeof root, "%s/s", tmp);
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open_folder(&ds, root, NULL), CT_OK, "%s", ct_last_error());
    return ds;
}

Test(data_folder, keras_split_takes_the_first_fraction_of_each_class) {
    ct_dataset *ds = split_tree(), *tr = NULL, *va = NULL;
    /* int(0.25 * n): 2, 1, 0, 0 validation files. */
    cr_assert_eq(ct_dataset_split(ds, 0.25, CT_SPLIT_KERAS, 0, &tr, &va), CT_OK);
    static const char *const val[] = {"c0/f00.png", "c0/f01.png", "c1/f00.png"};
    expect_names(va, val, 3);
    cr_expect_eq(ct_dataset_count(tr), 18);
    cr_expect_str_eq(ct_dataset_name(tr, 0), "c0/f02.png");
    cr_expect_eq(ct_dataset_role(tr), CT_ROLE_TRAINING);
    cr_expect_eq(ct_dataset_role(va), CT_ROLE_VALIDATION);
    cr_expect_eq(ct_dataset_class_count(tr, 3), 1);
    char msg[128];
    ct_dataset_found_message(va, msg, sizeof msg);
    cr_expect_str_eq(msg, "Found 3 images belonging to 4 classes.");
    ct_dataset_free(tr);
    ct_dataset_free(va);
    /* 0.3 * 10 is 3.0000000000000004 in double and 0.7 * 10 is 7.000000000000001: int() gives
     * 3 and 7, as Python does. */
    cr_assert_eq(ct_dataset_split(ds, 0.3, CT_SPLIT_KERAS, 0, &tr, &va), CT_OK);
    cr_expect_eq(ct_dataset_class_count(va, 0), 3);
    cr_expect_eq(ct_dataset_class_count(va, 1), 2); /* int(2.1) */
    ct_dataset_free(tr);
    ct_dataset_free(va);
    cr_assert_eq(ct_dataset_split(ds, 0.7, CT_SPLIT_KERAS, 0, &tr, &va), CT_OK);
    cr_expect_eq(ct_dataset_class_count(va, 0), 7);
    ct_dataset_free(tr);
    ct_dataset_free(va);
    cr_expect_eq(ct_dataset_split(ds, 0.0, CT_SPLIT_KERAS, 0, &tr, &va), CT_EINVAL);
    cr_expect_eq(ct_dataset_split(ds, 1.0, CT_SPLIT_KERAS, 0, &tr, &va), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "strictly between 0 and 1") != NULL);
    ct_dataset_free(ds);
}

Test(data_folder, stratified_split_is_seeded_and_complete) {
    ct_dataset *ds = split_tree();
    ct_dataset *tr[3], *va[3];
    const uint64_t seeds[3] = {7, 7, 8};
    for (int s = 0; s < 3; s++)
        cr_assert_eq(ct_dataset_split(ds, 0.3, CT_SPLIT_STRATIFIED, seeds[s], &tr[s], &va[s]),
                     CT_OK);
    /* Keras's counts per class, a random choice within each class. */
    cr_expect_eq(ct_dataset_class_count(va[0], 0), 3);
    cr_expect_eq(ct_dataset_class_count(va[0], 1), 2);
    cr_expect_eq(ct_dataset_class_count(va[0], 2), 0);
    cr_expect_eq(ct_dataset_count(tr[0]) + ct_dataset_count(va[0]), ct_dataset_count(ds));
    /* Same seed, same split; both subsets keep the dataset order; together they are all. */
    cr_assert_eq(ct_dataset_count(va[0]), ct_dataset_count(va[1]));
    for (size_t i = 0; i < ct_dataset_count(va[0]); i++) {
        cr_expect_str_eq(ct_dataset_name(va[0], i), ct_dataset_name(va[1], i));
        if (i > 0) cr_expect_lt(ct_dataset_origin(va[0], i - 1), ct_dataset_origin(va[0], i));
    }
    uint8_t *seen = calloc(ct_dataset_count(ds), 1);
    for (size_t i = 0; i < ct_dataset_count(va[0]); i++) seen[ct_dataset_origin(va[0], i)]++;
    for (size_t i = 0; i < ct_dataset_count(tr[0]); i++) seen[ct_dataset_origin(tr[0], i)]++;
    for (size_t i = 0; i < ct_dataset_count(ds); i++) cr_expect_eq(seen[i], 1);
    free(seen);
    /* Another seed picks differently (3 of 10 and 2 of 7: C(10,3) C(7,2) = 2520 choices). */
    bool differ = false;
    for (size_t i = 0; i < ct_dataset_count(va[0]); i++)
        differ |= strcmp(ct_dataset_name(va[0], i), ct_dataset_name(va[2], i)) != 0;
    cr_expect(differ, "seeds 7 and 8 chose the same validation files");
    /* Not Keras's first files either. */
    bool first = true;
    for (size_t i = 0; i < 3; i++) first &= ct_dataset_origin(va[0], i) == i;
    cr_expect(!first);
    for (int s = 0; s < 3; s++) {
        ct_dataset_free(tr[s]);
        ct_dataset_free(va[s]);
    }
    ct_dataset_free(ds);
}

Test(data_folder, subsets_are_views) {
    ct_dataset *ds = split_tree(), *sub = NULL;
    const size_t idx[3] = {20, 0, 10};
    cr_assert_eq(ct_dataset_subset(ds, idx, 3, CT_ROLE_TEST, &sub), CT_OK);
    cr_expect_str_eq(ct_dataset_name(sub, 0), "c3/f00.png");
    cr_expect_str_eq(ct_dataset_name(sub, 1), "c0/f00.png");
    cr_expect_str_eq(ct_dataset_name(sub, 2), "c1/f00.png");
    cr_expect_eq(ct_dataset_role(sub), CT_ROLE_TEST);
    cr_expect_eq(ct_dataset_class_count(sub, 0), 1);
    /* The view outlives the dataset it came from. */
    ct_dataset_free(ds);
    cr_expect_str_eq(ct_dataset_name(sub, 2), "c1/f00.png");
    const size_t bad[1] = {3};
    ct_dataset *sub2 = NULL;
    cr_expect_eq(ct_dataset_subset(sub, bad, 1, CT_ROLE_ANY, &sub2), CT_EINVAL);
    ct_dataset_free(sub);
}

Test(data_folder, open_dispatches_on_the_path) {
    make_tree();
    char root[4096];
    snprintf(root, sizeof root, "%s/root", tmp);
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open(&ds, root), CT_OK, "%s", ct_last_error());
    cr_expect_eq(ct_dataset_num_classes(ds), 4);
    ct_dataset_free(ds);
    snprintf(root, sizeof root, "%s/absent", tmp);
    cr_expect_eq(ct_dataset_open(&ds, root), CT_ENOTFOUND);
}
