/* The iceberg JSON reader: images [band_1, band_2, mean], labels and ids, the inc_angle "na"
 * policies (mean, median, ffill, a value, refuse), unlabelled test files, the split rule for
 * arrays, and every malformed record, each error naming the record index and id. Files are
 * written here from a formula. */
#include "test_data_util.h"

#include <math.h>

#include "data/data.h"

static char *tmp;
static void setup(void) { tmp = td_tmpdir(); }
static void teardown(void) {
    td_rmrf(tmp);
    tmp = NULL;
}
TestSuite(data_iceberg, .init = setup, .fini = teardown, .timeout = 60);

static double band_value(int band, int rec, int i) {
    return band == 1 ? -20.0 + (i % 97) * 0.25 + rec : -25.0 + (i % 89) * 0.125 - rec;
}

/* One record's text. angle: a number text or "\"na\"". label -1: no is_iceberg. */
static void write_record(FILE *f, int rec, const char *id, const char *angle, int label,
                         int band1_len) {
    fprintf(f, "{\"id\": \"%s\", \"band_1\": [", id);
    for (int i = 0; i < band1_len; i++) fprintf(f, "%s%.9g", i ? ", " : "", band_value(1, rec, i));
    fprintf(f, "], \"band_2\": [");
    for (int i = 0; i < 5625; i++) fprintf(f, "%s%.9g", i ? "," : "", band_value(2, rec, i));
    fprintf(f, "], \"inc_angle\": %s", angle);
    if (label >= 0) fprintf(f, ", \"is_iceberg\": %d", label);
    fprintf(f, "}");
}

/* A file of n records with angles from `angles` (texts) and labels rec % 2 (or none). */
static const char *write_file(const char *name, int n, const char *const *angles, bool labels) {
    static char path[4096];
    snprintf(path, sizeof path, "%s", td_path(tmp, name));
    FILE *f = fopen(path, "w");
    fprintf(f, "[\n");
    for (int r = 0; r < n; r++) {
        char id[32];
        snprintf(id, sizeof id, "id%03d", r);
        if (r) fprintf(f, ",\n");
        write_record(f, r, id, angles[r], labels ? r % 2 : -1, 5625);
    }
    fprintf(f, "\n]\n");
    fclose(f);
    return path;
}

Test(data_iceberg, images_labels_ids_and_angles) {
    const char *const angles[4] = {"39.5", "\"na\"", "41.25", "36"};
    const char *path = write_file("train.json", 4, angles, true);
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open_iceberg(&ds, path, NULL), CT_OK, "%s", ct_last_error());
    cr_assert_eq(ct_dataset_count(ds), 4);
    int h, w, c;
    cr_assert(ct_dataset_in_memory(ds, &h, &w, &c));
    cr_expect(h == 75 && w == 75 && c == 3);
    cr_expect(ct_dataset_labelled(ds));
    cr_expect_eq(ct_dataset_num_classes(ds), 2);
    cr_expect_str_eq(ct_dataset_class_name(ds, 0), "ship");
    cr_expect_str_eq(ct_dataset_class_name(ds, 1), "iceberg");
    cr_expect_eq(ct_dataset_label(ds, 3), 1);
    cr_expect_str_eq(ct_dataset_name(ds, 2), "id002");
    cr_expect_null(ct_dataset_path(ds, 0));
    cr_expect_eq(ct_dataset_aux_dim(ds), 1);
    /* Pixel (r, c) is element r*75 + c of each band; channel 2 is their float32 mean. */
    const float *px = ct_dataset_pixels(ds, 1);
    for (int i = 0; i < 5625; i += 401) {
        float b1 = (float)band_value(1, 1, i), b2 = (float)band_value(2, 1, i);
        cr_expect_eq(px[i * 3], b1);
        cr_expect_eq(px[i * 3 + 1], b2);
        cr_expect_eq(px[i * 3 + 2], (b1 + b2) / 2.0f);
    }
    /* Default policy: the mean of the numeric angles. */
    cr_expect_eq(ct_dataset_na_count(ds), 1);
    const float mean = (float)((39.5 + 41.25 + 36.0) / 3.0);
    cr_expect_eq(*ct_dataset_aux(ds, 1), mean);
    cr_expect_eq(ct_dataset_na_fill(ds), mean);
    cr_expect_eq(*ct_dataset_aux(ds, 2), 41.25f);
    ct_dataset_free(ds);
}

static float angle_with(const char *path, ct_na_policy policy, float value, size_t i) {
    ct_iceberg_options o = {.na_policy = policy, .na_value = value};
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open_iceberg(&ds, path, &o), CT_OK, "%s", ct_last_error());
    float a = *ct_dataset_aux(ds, i);
    ct_dataset_free(ds);
    return a;
}

Test(data_iceberg, na_policies) {
    const char *const angles[6] = {"\"na\"", "30", "\"na\"", "50", "31", "\"na\""};
    const char *path = write_file("na.json", 6, angles, true);
    cr_expect_eq(angle_with(path, CT_NA_MEAN, 0, 0), 37.0f);
    cr_expect_eq(angle_with(path, CT_NA_MEDIAN, 0, 2), 31.0f);
    /* ffill: the previous angle; a leading "na" takes the first angle after it. */
    cr_expect_eq(angle_with(path, CT_NA_FFILL, 0, 0), 30.0f);
    cr_expect_eq(angle_with(path, CT_NA_FFILL, 0, 2), 30.0f);
    cr_expect_eq(angle_with(path, CT_NA_FFILL, 0, 5), 31.0f);
    cr_expect_eq(angle_with(path, CT_NA_VALUE, 39.25f, 5), 39.25f);
    ct_iceberg_options o = {.na_policy = CT_NA_ERROR};
    ct_dataset *ds = NULL;
    cr_expect_eq(ct_dataset_open_iceberg(&ds, path, &o), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "record 0 (id id000): inc_angle is \"na\"") != NULL, "%s",
              ct_last_error());
    /* An even count: the median is the mean of the middle two. */
    const char *const even[5] = {"\"na\"", "30", "40", "10", "20"};
    path = write_file("even.json", 5, even, true);
    cr_expect_eq(angle_with(path, CT_NA_MEDIAN, 0, 0), 25.0f);
    const char *const all_na[2] = {"\"na\"", "\"na\""};
    path = write_file("allna.json", 2, all_na, true);
    cr_expect_eq(ct_dataset_open_iceberg(&ds, path, NULL), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "every inc_angle is \"na\"") != NULL, "%s", ct_last_error());
}

Test(data_iceberg, unlabelled_test_file_and_array_split) {
    const char *const angles[5] = {"1", "2", "3", "4", "5"};
    const char *path = write_file("test.json", 5, angles, false);
    ct_dataset *ds = NULL;
    cr_assert_eq(ct_dataset_open(&ds, path), CT_OK, "%s", ct_last_error());
    cr_expect(!ct_dataset_labelled(ds));
    cr_expect_eq(ct_dataset_label(ds, 0), -1);
    cr_expect_eq(ct_dataset_class_count(ds, 0), 0);
    ct_dataset_free(ds);
    /* NumpyArrayIterator's rule: the first int(N * split) records, whatever their class. */
    path = write_file("train.json", 5, angles, true);
    cr_assert_eq(ct_dataset_open(&ds, path), CT_OK);
    ct_dataset *tr, *va;
    cr_assert_eq(ct_dataset_split(ds, 0.5, CT_SPLIT_KERAS, 0, &tr, &va), CT_OK);
    cr_assert_eq(ct_dataset_count(va), 2);
    cr_expect_str_eq(ct_dataset_name(va, 0), "id000");
    cr_expect_str_eq(ct_dataset_name(va, 1), "id001");
    cr_expect_str_eq(ct_dataset_name(tr, 0), "id002");
    ct_dataset_free(tr);
    ct_dataset_free(va);
    ct_dataset_free(ds);
}

/* A file with one good record followed by `bad` as record 1. */
static void expect_bad(const char *bad, ct_status want, const char *text) {
    static int serial;
    char name[32];
    snprintf(name, sizeof name, "bad%d.json", serial++);
    const char *path = td_path(tmp, name);
    FILE *f = fopen(path, "w");
    fprintf(f, "[");
    write_record(f, 0, "good0", "40", 1, 5625);
    fprintf(f, ",\n%s]", bad);
    fclose(f);
    ct_dataset *ds = NULL;
    ct_status s = ct_dataset_open_iceberg(&ds, path, NULL);
    cr_expect_eq(s, want, "%s: %s, expected %s (%s)", text, ct_status_name(s), ct_status_name(want),
                 ct_last_error());
    cr_expect(strstr(ct_last_error(), text) != NULL, "message lacks '%s': %s", text,
              ct_last_error());
    cr_expect_null(ds);
}

/* A record's text with a given band_1 length and angle/label texts. */
__attribute__((noinline)) /* GCC 12 misreads open_memstream's buffer as dangling when inlined */
static char *
record_text(const char *id, int band1_len, const char *angle, int label) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    write_record(f, 1, id, angle, label, band1_len);
    fclose(f);
    return buf;
}

Test(data_iceberg, bad_records_name_index_and_id) {
    char *r = record_text("short1", 5624, "40", 0);
    expect_bad(r, CT_ESHAPE, "record 1 (id short1): 'band_1' has 5624 values, expected 5625");
    free(r);
    r = record_text("long1", 5626, "40", 0);
    expect_bad(r, CT_ESHAPE, "record 1 (id long1): 'band_1' has 5626 values");
    free(r);
    expect_bad("{\"id\": \"noband\", \"band_2\": [], \"inc_angle\": 3, \"is_iceberg\": 0}",
               CT_EFORMAT, "record 1 (id noband): missing field 'band_1'");
    expect_bad("{\"band_1\": []}", CT_EFORMAT, "record 1: missing field 'id'");
    expect_bad("{\"id\": 7}", CT_EFORMAT, "record 1: 'id' is not a string");
    expect_bad("[1, 2]", CT_EFORMAT, "record 1: not a JSON object");
    expect_bad("{\"id\": \"str1\", \"band_1\": \"zeros\"}", CT_EFORMAT,
               "record 1 (id str1): 'band_1' is not an array");
    expect_bad("{\"id\": \"txt1\", \"band_1\": [1, \"2\"]}", CT_EFORMAT,
               "record 1 (id txt1): band_1[1] is not a number");
    expect_bad("{\"id\": \"inf1\", \"band_1\": [1, 1e999]}", CT_ENUMERIC,
               "record 1 (id inf1): band_1[1] is not finite");
    expect_bad("{\"id\": \"nan1\", \"band_1\": [1, NaN]}", CT_EFORMAT,
               "record 1 (id nan1): non-finite number (NaN and Infinity are not JSON) at byte");
    expect_bad("{\"id\": \"syn1\", \"band_1\": [1 2]}", CT_EFORMAT,
               "record 1 (id syn1): JSON syntax error at byte");
    r = record_text("ang1", 5625, "\"unknown\"", 0);
    expect_bad(r, CT_EFORMAT, "record 1 (id ang1): inc_angle is the string \"unknown\"");
    free(r);
    r = record_text("ang2", 5625, "[40]", 0);
    expect_bad(r, CT_EFORMAT, "record 1 (id ang2): inc_angle is neither a number nor \"na\"");
    free(r);
    r = record_text("lab2", 5625, "40", 2);
    expect_bad(r, CT_EFORMAT, "record 1 (id lab2): is_iceberg must be 0 or 1");
    free(r);
    r = record_text("nolab", 5625, "40", -1);
    expect_bad(r, CT_EFORMAT, "record 1 (id nolab): missing field 'is_iceberg'");
    free(r);
    r = record_text("good0", 5625, "40", 0);
    expect_bad(r, CT_EFORMAT, "records 0 and 1 have the same id 'good0'");
    free(r);
    r = record_text("noangle", 5625, "40", 0);
    char *p = strstr(r, ", \"inc_angle\"");
    memmove(p, p + strlen(", \"inc_angle\": 40"), strlen(p + strlen(", \"inc_angle\": 40")) + 1);
    expect_bad(r, CT_EFORMAT, "record 1 (id noangle): missing field 'inc_angle'");
    free(r);
}

Test(data_iceberg, bad_files) {
    ct_dataset *ds = NULL;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"", "empty file"},
        {"  \n ", "empty file"},
        {"{\"id\": \"x\"}", "expected an array of records ('[') at byte 0"},
        {"[]", "the array holds no records"},
        {"[{\"id\": \"a\"", "record 0 (id a): JSON syntax error"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%zu.json", i);
        const char *path = td_path(tmp, name);
        td_write(path, cases[i].text, strlen(cases[i].text));
        cr_expect_eq(ct_dataset_open_iceberg(&ds, path, NULL), CT_EFORMAT, "case %zu", i);
        cr_expect(strstr(ct_last_error(), cases[i].want) != NULL, "case %zu: %s", i,
                  ct_last_error());
    }
    /* Labels on the first record only, trailing data, a missing ']'. */
    const char *const one[1] = {"1"};
    const char *path = write_file("ok.json", 1, one, false);
    size_t n;
    char *text = (char *)td_read(path, &n);
    char *buf = malloc(n + 64);
    snprintf(buf, n + 64, "%.*s garbage", (int)n, text);
    td_write(path, buf, strlen(buf));
    cr_expect_eq(ct_dataset_open_iceberg(&ds, path, NULL), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "unexpected data after the array") != NULL, "%s",
              ct_last_error());
    char *close = strrchr(text, ']');
    *close = '\0';
    td_write(path, text, strlen(text));
    cr_expect_eq(ct_dataset_open_iceberg(&ds, path, NULL), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "no closing ']'") != NULL, "%s", ct_last_error());
    free(buf);
    free(text);
    /* Two records without a comma between them. */
    char *r0 = record_text("a0", 5625, "40", 0), *r1 = record_text("a1", 5625, "40", 1);
    char *two = malloc(strlen(r0) + strlen(r1) + 8);
    sprintf(two, "[%s %s]", r0, r1);
    path = td_path(tmp, "nocomma.json");
    td_write(path, two, strlen(two));
    cr_expect_eq(ct_dataset_open_iceberg(&ds, path, NULL), CT_EFORMAT);
    cr_expect(strstr(ct_last_error(), "after record 0: expected ',' or ']'") != NULL, "%s",
              ct_last_error());
    free(r0);
    free(r1);
    free(two);
    char missing[4096];
    snprintf(missing, sizeof missing, "%s/absent.json", tmp);
    cr_expect_eq(ct_dataset_open_iceberg(&ds, missing, NULL), CT_ENOTFOUND);
    cr_expect_null(ds);
}

Test(data_iceberg, labels_on_some_records_only) {
    const char *path = td_path(tmp, "mixed.json");
    FILE *f = fopen(path, "w");
    fprintf(f, "[");
    write_record(f, 0, "u0", "40", -1, 5625);
    fprintf(f, ",");
    write_record(f, 1, "l1", "40", 1, 5625);
    fprintf(f, "]");
    fclose(f);
    ct_dataset *ds = NULL;
    cr_expect_eq(ct_dataset_open_iceberg(&ds, path, NULL), CT_EFORMAT);
    cr_expect(
        strstr(ct_last_error(), "record 1 (id l1): has 'is_iceberg' but record 0 has none") != NULL,
        "%s", ct_last_error());
}
