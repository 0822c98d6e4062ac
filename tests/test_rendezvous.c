/* The rendezvous and its liveness channel (dist/rendezvous.h) on 127.0.0.1, the test process as
 * one rank and forked processes as the others: the blob reaches every rank in any start order,
 * every mismatch and timeout fails with a message naming the rank, the address and the port, a
 * stranger on the port is refused, and a rank killed with SIGKILL is reported within seconds.
 * Timeouts are 2 to 3 s so the whole file takes well under 30 s. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "dist/launch.h"
#include "dist/rendezvous.h"

#define BLOB_LEN 128

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

static ct_world world_of(int rank, int size, int port) {
    ct_world w = {.launch = CT_LAUNCH_ENV, .rank = rank, .size = size, .local_rank = rank,
                  .local_size = size, .master_port = port};
    snprintf(w.master_addr, sizeof w.master_addr, "127.0.0.1");
    snprintf(w.host, sizeof w.host, "host-%d", rank);
    return w;
}

static int free_port(void) {
    int port = 0;
    cr_assert_eq(ct_launch_free_port(&port), CT_OK, "%s", ct_last_error());
    return port;
}

static void fill_blob(unsigned char *b) {
    for (int i = 0; i < BLOB_LEN; i++) b[i] = (unsigned char)(i * 7 + 3);
}

/* ---- ranks in child processes: what they saw comes back through a pipe ---- */

typedef struct peer {
    pid_t pid;
    int fd; /* read end: "ok", or the rank's error message */
} peer;

typedef enum { PEER_OPEN, PEER_WATCH, PEER_WATCH_CLEAN } peer_mode;

static int child_fd = -1;

static void child_on_lost(void *user, int rank, const char *reason) {
    (void)user;
    dprintf(child_fd, "lost rank %d: %s", rank, reason);
    _exit(3);
}

/* Runs rank `rank` after `delay` seconds: opens (and per `mode` watches and waits, or closes
 * cleanly after a moment), then exits 0 when it got rank 0's blob. */
static peer spawn_rank(int rank, int size, int port, uint64_t check, double delay,
                       peer_mode mode) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid > 0) {
        close(p[1]);
        return (peer){pid, p[0]};
    }
    close(p[0]);
    child_fd = p[1];
    sleep_s(delay);
    ct_world w = world_of(rank, size, port);
    unsigned char blob[BLOB_LEN] = {0}, want[BLOB_LEN];
    fill_blob(want);
    ct_rendezvous *rv = NULL;
    if (ct_rendezvous_open(&rv, &w, check, blob, BLOB_LEN, 3.0) != CT_OK) {
        dprintf(child_fd, "%s", ct_last_error());
        _exit(1);
    }
    bool same = memcmp(blob, want, BLOB_LEN) == 0;
    const char *h0 = ct_rendezvous_host(rv, 0);
    dprintf(child_fd, "%s", same && h0 && strcmp(h0, "host-0") == 0 ? "ok" : "wrong blob");
    if (mode != PEER_OPEN) ct_rendezvous_watch(rv, 2.0, child_on_lost, NULL);
    if (mode == PEER_WATCH)
        for (;;) pause();
    if (mode == PEER_WATCH_CLEAN) sleep_s(0.3);
    ct_rendezvous_close(rv, true);
    _exit(same ? 0 : 1);
}

/* Waits for a peer; its exit code, and what it said into `said`. */
static int peer_wait(peer pr, char *said, size_t cap) {
    int status = 0;
    waitpid(pr.pid, &status, 0);
    ssize_t n = read(pr.fd, said, cap - 1);
    said[n > 0 ? n : 0] = '\0';
    close(pr.fd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- the rendezvous ---- */

static ct_status open_root(ct_rendezvous **rv, int size, int port, uint64_t check, double to) {
    ct_world w = world_of(0, size, port);
    unsigned char blob[BLOB_LEN];
    fill_blob(blob);
    return ct_rendezvous_open(rv, &w, check, blob, BLOB_LEN, to);
}

static void expect_peer(peer pr, int code, const char *text) {
    char said[1024];
    int rc = peer_wait(pr, said, sizeof said);
    cr_expect_eq(rc, code, "a rank exited %d (expected %d): %s", rc, code, said);
    cr_expect(strstr(said, text) != NULL, "a rank said '%s', expected '%s'", said, text);
}

static void on_lost(void *user, int rank, const char *reason);

/* Rank 0 of n + 1, met by peers ranks 1..n in `mode` (the last starting `last_delay` s late),
 * watching them for `watch` seconds (0: not). */
static ct_rendezvous *root_with(peer *peers, int n, peer_mode mode, double last_delay,
                                double watch) {
    int port = free_port();
    for (int i = 0; i < n; i++)
        peers[i] = spawn_rank(i + 1, n + 1, port, 42, i == n - 1 ? last_delay : 0, mode);
    ct_rendezvous *rv = NULL;
    cr_assert_eq(open_root(&rv, n + 1, port, 42, 3.0), CT_OK, "%s", ct_last_error());
    if (watch > 0.0)
        cr_assert_eq(ct_rendezvous_watch(rv, watch, on_lost, NULL), CT_OK, "%s",
                     ct_last_error());
    return rv;
}

Test(rendezvous, three_ranks_get_rank_0s_blob, .timeout = 20) {
    peer p[2];
    ct_rendezvous *rv = root_with(p, 2, PEER_OPEN, 0.2, 0.0);
    cr_expect_str_eq(ct_rendezvous_host(rv, 2), "host-2");
    ct_rendezvous_close(rv, true);
    expect_peer(p[0], 0, "ok");
    expect_peer(p[1], 0, "ok");
}

Test(rendezvous, rank_0_arriving_last, .timeout = 20) {
    int port = free_port();
    peer a = spawn_rank(1, 3, port, 42, 0, PEER_OPEN), b = spawn_rank(2, 3, port, 42, 0, PEER_OPEN);
    sleep_s(0.8); /* both ranks retry against a closed port meanwhile */
    ct_rendezvous *rv = NULL;
    cr_assert_eq(open_root(&rv, 3, port, 42, 3.0), CT_OK, "%s", ct_last_error());
    ct_rendezvous_close(rv, true);
    expect_peer(a, 0, "ok");
    expect_peer(b, 0, "ok");
}

Test(rendezvous, wrong_port_fails_within_the_timeout, .timeout = 20) {
    int port = free_port();
    ct_world w = world_of(1, 2, port);
    unsigned char blob[BLOB_LEN];
    ct_rendezvous *rv = NULL;
    double t0 = now_s();
    cr_assert_neq(ct_rendezvous_open(&rv, &w, 42, blob, BLOB_LEN, 2.0), CT_OK);
    double took = now_s() - t0;
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", port);
    cr_expect(took >= 1.5 && took < 3.0, "took %.2f s for a 2 s timeout", took);
    cr_expect(strstr(ct_last_error(), where) != NULL, "%s", ct_last_error());
    cr_expect(strstr(ct_last_error(), "rank 1") != NULL, "%s", ct_last_error());
    cr_expect(strstr(ct_last_error(), "refused") != NULL, "%s", ct_last_error());
}

Test(rendezvous, a_missing_rank_is_named, .timeout = 20) {
    int port = free_port();
    peer a = spawn_rank(1, 3, port, 42, 0, PEER_OPEN);
    ct_rendezvous *rv = NULL;
    double t0 = now_s();
    cr_assert_neq(open_root(&rv, 3, port, 42, 2.0), CT_OK);
    cr_expect(now_s() - t0 < 3.0, "took %.2f s for a 2 s timeout", now_s() - t0);
    cr_expect(strstr(ct_last_error(), "rank 2 of 3 never arrived") != NULL, "%s",
              ct_last_error());
    cr_expect(strstr(ct_last_error(), "port") != NULL, "%s", ct_last_error());
    expect_peer(a, 1, "never arrived"); /* the rank that came learns why rank 0 stopped */
}

Test(rendezvous, mismatches_are_refused_naming_the_rank, .timeout = 30) {
    struct {
        int rank, size;
        uint64_t check;
        const char *text;
    } cases[] = {
        {1, 2, 7, "rank 1 (host host-1) runs with different settings"},
        {1, 3, 42, "rank 1 (host host-1) expects a world of 3 ranks, rank 0 of 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int port = free_port();
        peer a = spawn_rank(cases[i].rank, cases[i].size, port, cases[i].check, 0, PEER_OPEN);
        ct_rendezvous *rv = NULL;
        cr_expect_neq(open_root(&rv, 2, port, 42, 3.0), CT_OK);
        cr_expect(strstr(ct_last_error(), cases[i].text) != NULL, "%s", ct_last_error());
        expect_peer(a, 1, "refused it");
    }
}

Test(rendezvous, a_duplicate_rank_is_refused, .timeout = 20) {
    int port = free_port();
    peer a = spawn_rank(1, 3, port, 42, 0, PEER_OPEN);
    peer b = spawn_rank(1, 3, port, 42, 0.3, PEER_OPEN);
    ct_rendezvous *rv = NULL;
    cr_assert_neq(open_root(&rv, 3, port, 42, 3.0), CT_OK);
    cr_expect(strstr(ct_last_error(), "rank 1 arrived twice") != NULL, "%s", ct_last_error());
    char said[1024];
    peer_wait(a, said, sizeof said);
    peer_wait(b, said, sizeof said);
}

/* A client that is not a rank: sends `bytes`, then reads until rank 0 closes the connection. */
static pid_t spawn_stranger(int port, const void *bytes, size_t n) {
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid > 0) return pid;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    for (int i = 0; i < 50 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0; i++) {
        close(fd);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        sleep_s(0.05);
    }
    if (send(fd, bytes, n, MSG_NOSIGNAL) != (ssize_t)n) _exit(2);
    char sink[256];
    while (recv(fd, sink, sizeof sink, 0) > 0) {
    }
    _exit(0);
}

Test(rendezvous, strangers_are_refused_and_ranks_still_meet, .timeout = 20) {
    int port = free_port();
    const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    unsigned char huge[12] = {'C', 'T', 'R', 'V', 1, 0, 1, 0, 0xff, 0xff, 0xff, 0x7f};
    pid_t s1 = spawn_stranger(port, http, sizeof http - 1);
    pid_t s2 = spawn_stranger(port, huge, sizeof huge); /* a 2 GiB payload announced */
    peer a = spawn_rank(1, 2, port, 42, 0.5, PEER_OPEN);
    ct_rendezvous *rv = NULL;
    cr_assert_eq(open_root(&rv, 2, port, 42, 3.0), CT_OK, "%s", ct_last_error());
    ct_rendezvous_close(rv, true);
    expect_peer(a, 0, "ok");
    int st1 = 0, st2 = 0;
    waitpid(s1, &st1, 0);
    waitpid(s2, &st2, 0);
    cr_expect(WIFEXITED(st1) && WEXITSTATUS(st1) == 0, "the HTTP client was not closed cleanly");
    cr_expect(WIFEXITED(st2) && WEXITSTATUS(st2) == 0, "the huge frame's client was not closed");
}

Test(rendezvous, timeout_knob) {
    double t = 0;
    unsetenv("CUTUNE_RENDEZVOUS_TIMEOUT");
    cr_expect_eq(ct_rendezvous_timeout(&t), CT_OK);
    cr_expect_eq(t, 300.0);
    setenv("CUTUNE_RENDEZVOUS_TIMEOUT", "2.5", 1);
    cr_expect_eq(ct_rendezvous_timeout(&t), CT_OK);
    cr_expect_eq(t, 2.5);
    setenv("CUTUNE_RENDEZVOUS_TIMEOUT", "soon", 1);
    cr_expect_eq(ct_rendezvous_timeout(&t), CT_EINVAL);
    cr_expect(strstr(ct_last_error(), "CUTUNE_RENDEZVOUS_TIMEOUT='soon'") != NULL, "%s",
              ct_last_error());
}

/* ---- liveness ---- */

static atomic_int lost_rank = -1;
static char lost_reason[600];

static void on_lost(void *user, int rank, const char *reason) {
    (void)user;
    snprintf(lost_reason, sizeof lost_reason, "%s", reason);
    atomic_store(&lost_rank, rank);
}

/* Waits up to `seconds` for on_lost; the seconds it took, or -1. */
static double wait_lost(double seconds) {
    double t0 = now_s();
    while (atomic_load(&lost_rank) < 0 && now_s() - t0 < seconds) sleep_s(0.02);
    return atomic_load(&lost_rank) < 0 ? -1 : now_s() - t0;
}

Test(liveness, a_killed_rank_is_reported, .timeout = 20) {
    peer p[2];
    ct_rendezvous *rv = root_with(p, 2, PEER_WATCH, 0.0, 2.0);
    peer a = p[0], b = p[1];
    sleep_s(0.3);
    kill(b.pid, SIGKILL);
    double took = wait_lost(3.0);
    cr_expect(took >= 0 && took < 2.0, "on_lost after %.2f s", took);
    cr_expect_eq(atomic_load(&lost_rank), 2);
    cr_expect(strstr(lost_reason, "closed without a goodbye") != NULL, "%s", lost_reason);
    /* rank 1 learns from rank 0 which rank was lost */
    expect_peer(a, 3, "lost rank 2: rank 0 lost it");
    char said[64];
    peer_wait(b, said, sizeof said);
    ct_rendezvous_close(rv, false);
}

Test(liveness, rank_0_killed_is_reported_to_the_others, .timeout = 20) {
    peer a;
    ct_rendezvous *rv = root_with(&a, 1, PEER_WATCH, 0.0, 0.0);
    sleep_s(0.3);
    ct_rendezvous_close(rv, false); /* as if rank 0 had died */
    expect_peer(a, 3, "lost rank 0: its connection closed without a goodbye");
}

Test(liveness, a_clean_close_is_no_loss, .timeout = 20) {
    peer a;
    ct_rendezvous *rv = root_with(&a, 1, PEER_WATCH_CLEAN, 0.0, 2.0);
    expect_peer(a, 0, "ok");
    cr_expect_lt(wait_lost(2.5), 0, "on_lost fired for rank %d: %s", atomic_load(&lost_rank),
                 lost_reason);
    ct_rendezvous_close(rv, true);
}

Test(liveness, a_silent_rank_is_reported, .timeout = 20) {
    peer a;
    ct_rendezvous *rv = root_with(&a, 1, PEER_WATCH, 0.0, 1.5);
    kill(a.pid, SIGSTOP); /* alive to the kernel, silent to its peers */
    double took = wait_lost(4.0);
    cr_expect(took >= 1.0 && took < 3.0, "on_lost after %.2f s for a 1.5 s timeout", took);
    cr_expect_eq(atomic_load(&lost_rank), 1);
    cr_expect(strstr(lost_reason, "sent nothing for 1.5 s") != NULL, "%s", lost_reason);
    kill(a.pid, SIGKILL);
    char said[64];
    peer_wait(a, said, sizeof said);
    ct_rendezvous_close(rv, false);
}
