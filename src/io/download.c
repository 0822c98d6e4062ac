/* Downloading one file the way Keras's get_file does, for `--weights imagenet` (io/resolve.c).
 *
 * libcurl fetches the URL into `<dest>.part` beside the final name; a .part that an earlier,
 * broken-off attempt left is continued with a Range request, and a server that ignores the
 * range gets a clean restart. OpenSSL's EVP digest checks the whole file's MD5 against the
 * published one before rename() gives the file its final name, so a reader never sees a
 * partial or corrupt file under it. While the bytes arrive, a progress bar is redrawn on the
 * terminal (a line at the start and one at the end when the output is not a terminal).
 * Failures name the URL and the reason (libcurl's text or the HTTP status) and end with the
 * caller's advice on getting the file by hand; a transfer broken off (Ctrl-C included) keeps
 * its .part. */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "io.h"

#ifndef CUTUNE_VERSION
#define CUTUNE_VERSION "dev"
#endif

/* A transfer that stalls below one byte a second for this long is given up (and resumable). */
#define STALL_SECONDS 60L
#define CONNECT_SECONDS 30L
#define BAR_WIDTH 30

typedef struct transfer {
    FILE *f;               /* the .part, appended to */
    int write_errno;       /* errno of a failed write; 0 */
    curl_off_t offset;     /* bytes the .part held when this request started */
    FILE *progress;        /* NULL: quiet */
    bool tty;              /* progress is a terminal: a bar redrawn in place */
    double t0, drawn;      /* when the request started, when the bar was last drawn */
    curl_off_t now, total; /* bytes of the whole file held and expected (0: not known) */
} transfer;

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Ctrl-C (or SIGTERM) during a transfer stops it at once, keeping the .part, instead of
 * waiting for the whole file (a training run's handler would only set its stop flag). The
 * signal is then passed on to whatever handled it before. */
static volatile sig_atomic_t interrupted; /* the signal that arrived during a transfer, or 0 */

static void on_interrupt(int sig) { interrupted = sig; }

typedef struct saved_signals {
    struct sigaction intr, term;
} saved_signals;

static void catch_interrupts(saved_signals *saved) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &saved->intr);
    sigaction(SIGTERM, &sa, &saved->term);
}

static void release_interrupts(const saved_signals *saved) {
    sigaction(SIGINT, &saved->intr, NULL);
    sigaction(SIGTERM, &saved->term, NULL);
    if (interrupted != 0) raise(interrupted);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_data(char *data, size_t size, size_t n, void *user) {
    transfer *t = user;
    errno = 0;
    size_t wrote = fwrite(data, size, n, t->f);
    if (wrote != n) t->write_errno = errno != 0 ? errno : EIO;
    return wrote * size; /* short: libcurl stops with CURLE_WRITE_ERROR */
}

static void draw_bar(transfer *t, bool last) {
    double mb = (double)t->now / 1e6, dt = seconds() - t->t0;
    double rate = dt > 0.0 ? (double)(t->now - t->offset) / 1e6 / dt : 0.0;
    if (t->total <= 0) {
        fprintf(t->progress, "\r%8.1f MB  %6.1f MB/s%s", mb, rate, last ? "\n" : "");
    } else {
        double frac = (double)t->now / (double)t->total;
        if (frac > 1.0) frac = 1.0;
        char bar[BAR_WIDTH + 1];
        int full = (int)(frac * BAR_WIDTH);
        for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < full ? '=' : (i == full ? '>' : '.');
        bar[BAR_WIDTH] = '\0';
        fprintf(t->progress, "\r%8.1f/%.1f MB [%s] %3d%%  %6.1f MB/s%s", mb,
                (double)t->total / 1e6, bar, (int)(100.0 * frac), rate, last ? "\n" : "");
    }
    fflush(t->progress);
    t->drawn = seconds();
}

/* libcurl's progress callback: counts are this request's, after the resumed offset. */
static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    (void)ultotal;
    (void)ulnow;
    transfer *t = user;
    t->now = t->offset + dlnow;
    if (dltotal > 0) t->total = t->offset + dltotal;
    if (t->progress != NULL && t->tty && t->now > 0 && seconds() - t->drawn >= 0.1)
        draw_bar(t, false);
    return interrupted != 0; /* non-zero: libcurl stops with CURLE_ABORTED_BY_CALLBACK */
}

/* Options are set through SET, which returns the failure of the first that libcurl refuses
 * (an unknown option, out of memory), naming it. */
#define SET(h, opt, val)                                                                     \
    do {                                                                                     \
        CURLcode rc_ = curl_easy_setopt(h, opt, val);                                        \
        if (rc_ != CURLE_OK) {                                                               \
            snprintf(errbuf, CURL_ERROR_SIZE, "curl_easy_setopt(%s): %s", #opt,              \
                     curl_easy_strerror(rc_));                                               \
            return rc_;                                                                      \
        }                                                                                    \
    } while (0)

static CURLcode configure(CURL *h, const char *url, transfer *t, char *errbuf) {
    SET(h, CURLOPT_ERRORBUFFER, errbuf);
    SET(h, CURLOPT_URL, url);
    SET(h, CURLOPT_FOLLOWLOCATION, 1L);
    SET(h, CURLOPT_MAXREDIRS, 10L);
    /* An HTTP error ends the transfer before its body could be taken for the file's bytes. */
    SET(h, CURLOPT_FAILONERROR, 1L);
    SET(h, CURLOPT_NOSIGNAL, 1L);
    SET(h, CURLOPT_CONNECTTIMEOUT, CONNECT_SECONDS);
    SET(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(h, CURLOPT_LOW_SPEED_TIME, STALL_SECONDS);
    SET(h, CURLOPT_USERAGENT, "cutune/" CUTUNE_VERSION);
    SET(h, CURLOPT_WRITEFUNCTION, on_data);
    SET(h, CURLOPT_WRITEDATA, t);
    SET(h, CURLOPT_NOPROGRESS, 0L);
    SET(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(h, CURLOPT_XFERINFODATA, t);
    SET(h, CURLOPT_RESUME_FROM_LARGE, t->offset);
    return CURLE_OK;
}

#undef SET

/* What one request did. */
typedef struct outcome {
    CURLcode rc;
    long http;                   /* the last response's status; 0 without one */
    char reason[CURL_ERROR_SIZE];
    int write_errno;
    bool interrupted;            /* by SIGINT or SIGTERM */
} outcome;

/* One request for `url` into the .part at `part`: appended to (resuming from its size), or
 * emptied first when `fresh`. */
static ct_status request(const char *url, const char *part, bool fresh, FILE *progress,
                         outcome *out, curl_off_t *offset) {
    memset(out, 0, sizeof *out);
    transfer t;
    memset(&t, 0, sizeof t);
    t.f = fopen(part, fresh ? "wb" : "ab");
    if (t.f == NULL) return ct_error(CT_EIO, "cannot write %s: %s", part, strerror(errno));
    struct stat st;
    t.offset = fstat(fileno(t.f), &st) == 0 ? (curl_off_t)st.st_size : 0;
    *offset = t.offset;
    t.progress = progress;
    t.tty = progress != NULL && isatty(fileno(progress));
    t.t0 = seconds();
    if (progress != NULL) {
        fprintf(progress, "Downloading data from %s\n", url);
        if (t.offset > 0)
            fprintf(progress, "  resuming after the %.1f MB of %s\n", (double)t.offset / 1e6,
                    part);
        fflush(progress);
    }
    CURL *h = curl_easy_init();
    if (h == NULL) {
        fclose(t.f);
        return ct_error(CT_ENOMEM, "could not start a download of %s (curl_easy_init)", url);
    }
    out->rc = configure(h, url, &t, out->reason);
    saved_signals saved;
    catch_interrupts(&saved);
    if (out->rc == CURLE_OK) out->rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->http);
    curl_easy_cleanup(h);
    out->write_errno = t.write_errno;
    if (out->reason[0] == '\0') snprintf(out->reason, sizeof out->reason, "%s",
                                         curl_easy_strerror(out->rc));
    /* The bytes that arrived are made durable even when the transfer broke off: they are
     * what the next attempt resumes from. */
    int err = 0;
    if (fflush(t.f) != 0 || fsync(fileno(t.f)) != 0) err = errno;
    if (fclose(t.f) != 0 && err == 0) err = errno;
    out->interrupted = interrupted != 0;
    release_interrupts(&saved); /* the bytes are safe before a default handler ends us */
    if (progress != NULL && out->rc == CURLE_OK) {
        if (t.tty) draw_bar(&t, true);
        else fprintf(progress, "  %.1f MB in %.1f s\n", (double)t.now / 1e6, seconds() - t.t0);
        fflush(progress);
    } else if (progress != NULL && t.tty && t.drawn > 0.0) {
        fputc('\n', progress);
    }
    if (out->rc == CURLE_OK && err != 0)
        return ct_error(CT_EIO, "cannot write %s: %s", part, strerror(err));
    return CT_OK;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* The message for a request that failed; the .part is removed when it holds nothing. */
static ct_status request_failed(const char *url, const char *part, const outcome *r,
                                const char *by_hand) {
    long kept = file_size(part);
    if (kept == 0) remove(part);
    char why[CT_WEIGHTS_PATH_MAX + CURL_ERROR_SIZE + 64];
    ct_status code = CT_EIO;
    if (r->rc == CURLE_HTTP_RETURNED_ERROR) {
        snprintf(why, sizeof why, "the server answered HTTP %ld", r->http);
        if (r->http == 404 || r->http == 410) code = CT_ENOTFOUND;
    } else if (r->rc == CURLE_ABORTED_BY_CALLBACK && r->interrupted) {
        snprintf(why, sizeof why, "interrupted");
        code = CT_EINTR;
    } else if (r->rc == CURLE_WRITE_ERROR && r->write_errno != 0) {
        snprintf(why, sizeof why, "cannot write %s: %s", part, strerror(r->write_errno));
    } else {
        snprintf(why, sizeof why, "%s", r->reason);
        if (r->rc == CURLE_COULDNT_RESOLVE_HOST || r->rc == CURLE_COULDNT_RESOLVE_PROXY ||
            r->rc == CURLE_COULDNT_CONNECT)
            code = CT_ENOTFOUND;
    }
    char keep[CT_WEIGHTS_PATH_MAX + 128] = "";
    if (kept > 0)
        snprintf(keep, sizeof keep, " The %ld bytes downloaded so far are kept in %s; the next "
                 "attempt resumes from there.", kept, part);
    return ct_error(code, "could not download %s: %s.%s%s%s", url, why, keep,
                    by_hand != NULL ? " " : "", by_hand != NULL ? by_hand : "");
}

/* The MD5 of a whole file, as 32 lowercase hex digits. */
ct_status ct__md5_file(const char *path, char hex[33]) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return ct_error(CT_EIO, "cannot read %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[1 << 15], md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1;
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    bool read_ok = !ferror(f);
    ok = ok && read_ok && EVP_DigestFinal_ex(ctx, md, &len) == 1 && len == 16;
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (!read_ok) return ct_error(CT_EIO, "cannot read %s", path);
    if (!ok) return ct_error(CT_EIO, "cannot compute the MD5 of %s (OpenSSL's EVP MD5)", path);
    for (unsigned int i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return CT_OK;
}

/* The .part is complete and right: it takes the final name, durably. */
static ct_status commit(const char *part, const char *dest) {
    if (rename(part, dest) != 0)
        return ct_error(CT_EIO, "cannot rename %s to %s: %s", part, dest, strerror(errno));
    return ct_fsync_dir_of(dest);
}

ct_status ct__download(const char *url, const char *dest, const char *md5, const char *by_hand,
                       FILE *progress) {
    char part[CT_WEIGHTS_PATH_MAX];
    if (snprintf(part, sizeof part, "%s.part", dest) >= (int)sizeof part)
        return ct_error(CT_EINVAL, "%s: path too long", dest);
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return ct_error(CT_EIO, "could not download %s: curl_global_init: %s", url,
                        curl_easy_strerror(curl_init_rc));
    /* Two tries at most: the second starts from nothing, after a server ignored the range
     * (libcurl's CURLE_RANGE_ERROR) or a resumed file failed its checksum (the .part may have
     * come from another version of the file, or be longer than it: HTTP 416). */
    for (int attempt = 0; attempt < 2; attempt++) {
        outcome r;
        curl_off_t offset = 0;
        ct_status s = request(url, part, attempt > 0, progress, &r, &offset);
        if (s != CT_OK) return s;
        if (r.rc == CURLE_RANGE_ERROR && offset > 0) {
            if (progress != NULL) fprintf(progress, "  the server ignored the range; restarting\n");
            continue;
        }
        /* 416 to a range from the .part's end: it may hold the whole file already. */
        bool complete = r.rc == CURLE_HTTP_RETURNED_ERROR && r.http == 416 && offset > 0;
        if (r.rc != CURLE_OK && !complete) return request_failed(url, part, &r, by_hand);
        char got[33] = "";
        if ((s = ct__md5_file(part, got)) != CT_OK) return s;
        if (md5 == NULL || strcmp(got, md5) == 0) return commit(part, dest);
        if (offset > 0) {
            if (progress != NULL)
                fprintf(progress, "  the resumed file's MD5 is wrong; downloading it again\n");
            continue;
        }
        remove(part);
        return ct_error(CT_EIO, "downloaded %s, but its MD5 is %s where %s is expected: the "
                        "file is corrupt or not the official one, and was removed.%s%s", url,
                        got, md5, by_hand != NULL ? " " : "", by_hand != NULL ? by_hand : "");
    }
    /* Unreachable: the second try is always fresh (offset 0). */
    return ct_error(CT_EIO, "could not download %s", url);
}
