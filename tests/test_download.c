/* Downloading the official weights (io/download.c, and --weights imagenet through
 * io/resolve.c), against a local HTTP server on the loopback (tests/http_fixture.py) that
 * serves a generated file well, wrongly, not at all, cut short, slowly, or ignoring ranges.
 * Each test starts its own server, so the server's log holds that test's requests only.
 * Nothing here reaches beyond 127.0.0.1. Without python3 the tests that need the server skip,
 * saying so. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cutune/weights.h"
#include "io/io.h"
#include "train/run.h"
#include "util.h"

/* What http_fixture.py serves: its default size and cut. */
#define FILE_SIZE 200000L
#define DROP_AFTER 70000L

static char dir[64];              /* this test's scratch folder */
static char base[64];             /* http://127.0.0.1:PORT */
static char good_md5[33], wrong_md5[33];
static pid_t server = -1;
static char log_path[128];
static char dest[128], part[160];

static void start_server(void) {
    snprintf(dir, sizeof dir, "/tmp/ct_dl_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(log_path, sizeof log_path, "%s/requests.log", dir);
    snprintf(dest, sizeof dest, "%s/weights.h5", dir);
    snprintf(part, sizeof part, "%s.part", dest);
    char script[4200];
    snprintf(script, sizeof script, "%s/../http_fixture.py", getenv("CUTUNE_FIXTURES"));
    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    server = fork();
    cr_assert_neq(server, -1);
    if (server == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        execlp("python3", "python3", script, "--log", log_path, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    /* The server prints its line once it listens: reading it is the wait, with no timing. */
    FILE *f = fdopen(fd[0], "r");
    char line[256] = "";
    int port = 0, got = 0;
    if (fgets(line, sizeof line, f) != NULL && strchr(line, '\n') != NULL)
        got = sscanf(line, "%d %32s %32s", &port, good_md5, wrong_md5);
    fclose(f);
    if (got != 3) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
        server = -1;
        return;
    }
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
}

static void stop_server(void) {
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
        server = -1;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(download, .init = start_server, .fini = stop_server, .timeout = 60);

#define REQUIRE_SERVER()                                                                     \
    do {                                                                                     \
        if (server <= 0)                                                                     \
            cr_skip_test("no local HTTP server: tests/http_fixture.py needs python3");       \
    } while (0)

static long size_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static const char *url_of(const char *mode) {
    static char url[128];
    snprintf(url, sizeof url, "%s/%s/weights.h5", base, mode);
    return url;
}

/* Expects the server's log (one `GET PATH RANGE` line per request, RANGE `-` without a Range
 * header) to hold `n` requests, the i-th as the i-th of the strings that follow (NULL: any). */
static void expect_requests(int n, ...) {
    FILE *f = fopen(log_path, "r");
    cr_assert_not_null(f);
    char lines[8][160];
    int got = 0;
    while (got < 8 && fgets(lines[got], sizeof lines[got], f) != NULL) {
        lines[got][strcspn(lines[got], "\n")] = '\0';
        got++;
    }
    fclose(f);
    cr_assert_eq(got, n, "%d requests, expected %d", got, n);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        if (want != NULL) cr_expect_str_eq(lines[i], want, "request %d", i + 1);
    }
    va_end(ap);
}

static void write_bytes(const char *path, const char *byte, long n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    for (long i = 0; i < n; i++) fputc(byte[i % (long)strlen(byte)], f);
    fclose(f);
}

static void expect_complete(void) {
    char md5[33];
    cr_assert_eq(ct__md5_file(dest, md5), CT_OK, "%s", ct_last_error());
    cr_expect_str_eq(md5, good_md5);
    cr_expect_eq(size_of(dest), FILE_SIZE);
    cr_expect_eq(size_of(part), -1, "the .part outlived the download");
}

/* A download that must fail with `code`: the message names the URL and ends with the caller's
 * advice, and no file has the final name. Returns the message. */
static const char *expect_failure(const char *url, ct_status code) {
    char copy[256];
    snprintf(copy, sizeof copy, "%s", url); /* url_of's buffer is reused */
    ct_status s = ct__download(copy, dest, good_md5, "BY HAND.", NULL);
    cr_assert_eq(s, code, "%s: %s", ct_status_name(s), ct_last_error());
    const char *e = ct_last_error();
    cr_expect(strstr(e, copy) != NULL, "the URL is not named: %s", e);
    cr_expect(strstr(e, "BY HAND.") != NULL, "the advice is missing: %s", e);
    cr_expect_eq(size_of(dest), -1);
    return e;
}

Test(download, a_good_file_takes_its_name_after_its_md5_is_checked) {
    REQUIRE_SERVER();
    FILE *progress = tmpfile();
    cr_assert_not_null(progress);
    cr_assert_eq(ct__download(url_of("good"), dest, good_md5, NULL, progress), CT_OK, "%s",
                 ct_last_error());
    expect_complete();
    /* Not a terminal: a line at the start, naming the URL as Keras does, and one at the end. */
    char text[1024] = "";
    rewind(progress);
    size_t n = fread(text, 1, sizeof text - 1, progress);
    text[n] = '\0';
    fclose(progress);
    char want[256];
    snprintf(want, sizeof want, "Downloading data from %s\n", url_of("good"));
    cr_expect(strstr(text, want) == text, "%s", text);
    cr_expect(strstr(text, "0.2 MB in ") != NULL, "%s", text);
    cr_expect(strchr(text, '\r') == NULL, "a bar drawn into a file: %s", text);
    expect_requests(1, "GET /good/weights.h5 -");
}

Test(download, a_wrong_md5_leaves_no_file_and_names_both_sums) {
    REQUIRE_SERVER();
    const char *e = expect_failure(url_of("wrong"), CT_EIO);
    cr_expect(strstr(e, good_md5) != NULL, "the expected MD5 is not named: %s", e);
    cr_expect(strstr(e, wrong_md5) != NULL, "the actual MD5 is not named: %s", e);
    cr_expect_eq(size_of(part), -1, "a corrupt .part was kept");
}

Test(download, a_transfer_cut_short_keeps_its_part_and_resumes_with_a_range) {
    REQUIRE_SERVER();
    const char *e = expect_failure(url_of("drop"), CT_EIO);
    cr_expect(strstr(e, "70000 bytes downloaded so far are kept in") != NULL, "%s", e);
    cr_expect(strstr(e, part) != NULL, "%s", e);
    cr_assert_eq(size_of(part), DROP_AFTER);

    cr_assert_eq(ct__download(url_of("drop"), dest, good_md5, NULL, NULL), CT_OK, "%s",
                 ct_last_error());
    expect_complete();
    expect_requests(2, "GET /drop/weights.h5 -", "GET /drop/weights.h5 bytes=70000-");
}

/* A stale .part of 1000 bytes: the first request asks for the rest (a range), the second for
 * the whole file, which is then complete. */
static void expect_restart_after_stale_part(const char *mode) {
    write_bytes(part, "stale", 1000);
    cr_assert_eq(ct__download(url_of(mode), dest, good_md5, NULL, NULL), CT_OK, "%s",
                 ct_last_error());
    expect_complete();
    char want[2][160];
    snprintf(want[0], sizeof want[0], "GET /%s/weights.h5 bytes=1000-", mode);
    snprintf(want[1], sizeof want[1], "GET /%s/weights.h5 -", mode);
    expect_requests(2, want[0], want[1]);
}

Test(download, a_server_that_ignores_the_range_gets_a_clean_restart) {
    REQUIRE_SERVER();
    expect_restart_after_stale_part("norange");
}

Test(download, a_resumed_file_with_a_wrong_md5_is_fetched_again_whole) {
    REQUIRE_SERVER();
    /* A .part of another file: the server honours the range, the sum of the whole is wrong. */
    expect_restart_after_stale_part("good");
}

Test(download, a_complete_part_needs_no_more_bytes) {
    REQUIRE_SERVER();
    /* The server answers 416 to a range past the end; the .part is checked and renamed. */
    cr_assert_eq(ct__download(url_of("good"), part, NULL, NULL, NULL), CT_OK, "%s",
                 ct_last_error());
    cr_assert_eq(ct__download(url_of("good"), dest, good_md5, NULL, NULL), CT_OK, "%s",
                 ct_last_error());
    expect_complete();
    expect_requests(2, NULL, "GET /good/weights.h5 bytes=200000-");
}

static volatile sig_atomic_t seen_signal;

static void on_signal(int sig) { seen_signal = sig; }

Test(download, an_interrupt_stops_the_transfer_and_keeps_the_part) {
    REQUIRE_SERVER();
    /* The test's own handler stands for a training run's: the signal must reach it too. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGINT, &sa, NULL), 0);
    pid_t child = fork();
    cr_assert_neq(child, -1);
    if (child == 0) {
        /* Ctrl-C once bytes have arrived; the server holds the rest back for a minute. */
        struct timespec tick = {0, 10 * 1000 * 1000};
        for (int i = 0; i < 3000 && size_of(part) <= 0; i++) nanosleep(&tick, NULL);
        kill(getppid(), SIGINT);
        _exit(0);
    }
    const char *e = expect_failure(url_of("slow"), CT_EINTR);
    waitpid(child, NULL, 0);
    cr_expect(strstr(e, "interrupted") != NULL, "%s", e);
    cr_expect(strstr(e, "kept in") != NULL, "%s", e);
    cr_expect_eq(seen_signal, SIGINT, "the signal was not passed on");
    cr_expect_gt(size_of(part), 0);
}

Test(download, http_404_names_the_url_and_the_status) {
    REQUIRE_SERVER();
    const char *e = expect_failure(url_of("missing"), CT_ENOTFOUND);
    cr_expect(strstr(e, "HTTP 404") != NULL, "%s", e);
    cr_expect_eq(size_of(part), -1, "an empty .part was left");
}

Test(download, nothing_listening_is_a_clear_failure) {
    /* A port that was free a moment ago: bound, then released. */
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(sock, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(sock, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(sock, (struct sockaddr *)&a, &len), 0);
    close(sock);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/good/weights.h5", ntohs(a.sin_port));
    const char *e = expect_failure(url, CT_ENOTFOUND);
    cr_expect(strstr(e, "onnect") != NULL, "libcurl's reason is missing: %s", e);
    cr_expect_eq(size_of(part), -1, "an empty .part was left");
}

Test(download, a_folder_that_cannot_be_written_is_named) {
    REQUIRE_SERVER();
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/folder/weights.h5", dir);
    cr_assert_eq(ct__download(url_of("good"), bad, good_md5, NULL, NULL), CT_EIO);
    cr_expect(strstr(ct_last_error(), "no/such/folder/weights.h5.part") != NULL, "%s",
              ct_last_error());
}

/* ---- --weights imagenet ---- */

#define NOTOP "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"

/* Resolution that must download: HOME and the working folder are the scratch folder. False
 * when the real file is installed in the checkout, where resolution finds it first. */
static bool isolate(void) {
    char home[128];
    snprintf(home, sizeof home, "%s/home", dir);
    setenv("HOME", home, 1);
    cr_assert_eq(chdir(dir), 0);
    unsetenv("CUTUNE_OFFLINE");
    unsetenv("CUTUNE_WEIGHTS");
    char path[4096];
    setenv("CUTUNE_OFFLINE", "1", 1);
    bool installed = ct_weights_resolve_imagenet(NULL, false, path, sizeof path) == CT_OK;
    unsetenv("CUTUNE_OFFLINE");
    return !installed;
}

Test(download, imagenet_downloads_into_the_keras_cache_and_checks_the_official_md5) {
    REQUIRE_SERVER();
    if (!isolate()) cr_skip_test("the official file is installed in the checkout");
    char url[160], path[4096], kept[256];
    /* Into ~/.keras/models, created for it: a transfer cut short keeps its .part there. */
    snprintf(url, sizeof url, "%s/drop/", base);
    setenv("CUTUNE_WEIGHTS_URL", url, 1);
    ct_status s = ct_weights_resolve_imagenet(NULL, false, path, sizeof path);
    cr_assert_eq(s, CT_EIO);
    const char *e = ct_last_error();
    snprintf(url, sizeof url, "%s/drop/" NOTOP, base); /* the base URL and the file's name */
    cr_expect(strstr(e, url) != NULL, "%s", e);
    cr_expect(strstr(e, "fetch.sh") != NULL, "%s", e);
    snprintf(kept, sizeof kept, "%s/home/.keras/models/" NOTOP ".part", dir);
    cr_assert_eq(size_of(kept), DROP_AFTER);
    /* The next resolution resumes it; the whole is not the official file (its MD5 is the
     * table's), so it is fetched again whole, checked again, and removed. */
    s = ct_weights_resolve_imagenet(NULL, false, path, sizeof path);
    cr_assert_eq(s, CT_EIO);
    cr_expect(strstr(e, url) != NULL, "%s", e);
    cr_expect(strstr(e, CT_IMAGENET_NOTOP_MD5) != NULL, "%s", e);
    cr_expect(strstr(e, good_md5) != NULL, "%s", e);
    cr_expect_eq(size_of(kept), -1);
    kept[strlen(kept) - strlen(".part")] = '\0';
    cr_expect_eq(size_of(kept), -1);
    expect_requests(3, NULL, "GET /drop/" NOTOP " bytes=70000-", "GET /drop/" NOTOP " -");

    /* A folder in CUTUNE_WEIGHTS is where the download goes; a 404 says what to do by hand. */
    snprintf(url, sizeof url, "%s/missing", base); /* no slash: one is added */
    setenv("CUTUNE_WEIGHTS_URL", url, 1);
    setenv("CUTUNE_WEIGHTS", dir, 1);
    s = ct_weights_resolve_imagenet(NULL, false, path, sizeof path);
    cr_assert_eq(s, CT_ENOTFOUND);
    snprintf(url, sizeof url, "%s/missing/" NOTOP, base);
    cr_expect(strstr(e, url) != NULL, "%s", e);
    cr_expect(strstr(e, "HTTP 404") != NULL, "%s", e);
    cr_expect(strstr(e, dir) != NULL, "the folders tried are not named: %s", e);
    cr_expect(strstr(e, "CUTUNE_WEIGHTS") != NULL, "%s", e);
    expect_requests(4, NULL, NULL, NULL, "GET /missing/" NOTOP " -");

    /* CUTUNE_OFFLINE=1: no request at all, and the message says how to fetch the file. */
    setenv("CUTUNE_OFFLINE", "1", 1);
    cr_assert_eq(ct_weights_resolve_imagenet(NULL, false, path, sizeof path), CT_ENOTFOUND);
    cr_expect(strstr(e, "CUTUNE_OFFLINE=1") != NULL, "%s", e);
    cr_expect(strstr(e, "fetch.sh") != NULL, "%s", e);
    expect_requests(4, NULL, NULL, NULL, NULL); /* none more */
    unsetenv("CUTUNE_WEIGHTS_URL");
    unsetenv("CUTUNE_WEIGHTS");
}

Test(download, train_with_imagenet_reports_the_md5_mismatch) {
    REQUIRE_SERVER();
    if (!isolate()) cr_skip_test("the official file is installed in the checkout");
    char data[128];
    snprintf(data, sizeof data, "%s/d", dir);
    cr_assert_eq(ct_demo_generate(data, 4, 32, 3), CT_OK, "%s", ct_last_error());
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "CUTUNE_OFFLINE=0 CUTUNE_WEIGHTS_URL=%s/wrong/ '%s' train --data %s/d/train "
             "--out %s/run --weights imagenet --input-size 32 --epochs 1 --batch-size 4 "
             "--device cpu --threads 1", base, getenv("CUTUNE_CLI"), dir, dir);
    int rc = tu_sh(cmd);
    cr_expect_neq(rc, 0, "%s", tu_out);
    char url[160];
    snprintf(url, sizeof url, "Downloading data from %s/wrong/" NOTOP, base);
    cr_expect(strstr(tu_out, url) != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, url + strlen("Downloading data from ")) != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, CT_IMAGENET_NOTOP_MD5) != NULL, "%s", tu_out);
    cr_expect(strstr(tu_out, wrong_md5) != NULL, "%s", tu_out);
}
