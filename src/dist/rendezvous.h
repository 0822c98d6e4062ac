/* The TCP rendezvous of a torchrun-style (ENV) launch, and the liveness channel it leaves open.
 *
 * Rank 0 listens on MASTER_PORT; every other rank connects to MASTER_ADDR:MASTER_PORT and says
 * hello (who it is, how many ranks it expects, a check value of the run's settings); rank 0
 * checks that the hellos agree and hands every rank a small blob (NCCL's 128-byte unique id).
 * Afterwards the connections stay open: a watcher thread exchanges heartbeats so that a rank
 * that died (kill -9, a crashed host) is noticed in seconds, instead of its peers hanging in an
 * all-reduce until NCCL's own timeout. This is the one piece of networking cutune writes: plain
 * POSIX sockets, fixed-size little-endian frames (rendezvous_wire.h). */
#ifndef CUTUNE_DIST_RENDEZVOUS_H
#define CUTUNE_DIST_RENDEZVOUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cutune/status.h"
#include "dist/world.h"

/* The largest blob a rendezvous hands out, in bytes (an ncclUniqueId is 128). */
#define CT_RENDEZVOUS_MAX_BLOB 512

typedef struct ct_rendezvous ct_rendezvous;

/* Rank 0 listens on MASTER_PORT (every address, SO_REUSEADDR); the others connect to
 * MASTER_ADDR:MASTER_PORT (getaddrinfo; IPv4 and IPv6), retrying until `timeout_s`. Every rank
 * sends a hello (magic, protocol version, rank, world size, host name, `check`: a 64-bit value of
 * the run's settings that must agree). Rank 0 checks them (same world size, ranks distinct and in
 * range, same check value; each mismatch an error naming the rank and host) and sends every rank
 * `blob` (blob_len bytes, at most CT_RENDEZVOUS_MAX_BLOB; rank 0's blob is read, the others'
 * written). Errors name the address, the port, the rank and the reason; a timeout says which
 * ranks never arrived (rank 0) or that rank 0 at ADDR:PORT never answered or refused (others).
 * A world of one rank opens without any socket. */
ct_status ct_rendezvous_open(ct_rendezvous **out, const ct_world *w, uint64_t check, void *blob,
                             size_t blob_len, double timeout_s);

/* A rank's host name as its hello said, after open: rank 0 knows every rank's, the others know
 * rank 0's and their own. NULL for a rank not known here. */
const char *ct_rendezvous_host(const ct_rendezvous *rv, int rank);

/* Keeps the connections open as a liveness channel: a thread polls them and sends a heartbeat
 * every second. When a peer's connection closes without its goodbye (the process died), breaks,
 * carries garbage, or brings nothing for `timeout_s`, on_lost(user, rank, reason) is called once,
 * from that thread, and the thread ends. Rank 0 watches every rank and, on losing one, tells the
 * others ("lost rank k") and closes their connections; the others watch rank 0, and when rank 0
 * reports a loss their on_lost names the lost rank with a reason saying rank 0 reported it. */
ct_status ct_rendezvous_watch(ct_rendezvous *rv, double timeout_s,
                              void (*on_lost)(void *user, int rank, const char *reason),
                              void *user);

/* Sends the goodbye (when `clean`), stops the watcher, closes the connections and frees. Without
 * `clean` the peers see the connection close as if this process had died. NULL is a no-op. */
void ct_rendezvous_close(ct_rendezvous *rv, bool clean);

/* The timeout knob: CUTUNE_RENDEZVOUS_TIMEOUT seconds (default 300, like torch's). CT_EINVAL
 * naming the variable and its value when it is not a positive number. */
ct_status ct_rendezvous_timeout(double *seconds);

#endif
