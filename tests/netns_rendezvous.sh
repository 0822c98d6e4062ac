#!/bin/sh
# The rendezvous across a real network link: two network namespaces joined by a veth pair
# (10.77.0.1 and 10.77.0.2), `cutune devices` as rank 0 in one and rank 1 in the other, as two
# hosts of a torchrun-style launch would run it. Checks that both ranks meet, that a wrong port
# fails on rank 1 within CUTUNE_RENDEZVOUS_TIMEOUT naming the address and port, and that a rank
# never started makes rank 0 fail naming it. Needs root and iproute2; skipped (exit 77) without.
#   netns_rendezvous.sh CUTUNE_BINARY
set -u
cli=$1
skip() { echo "netns_rendezvous: SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "not root (ip netns needs root)"
command -v ip >/dev/null 2>&1 || skip "no 'ip' command (install iproute2)"

a=ctrva$$ b=ctrvb$$ va=ctva$$ vb=ctvb$$
work=$(mktemp -d /tmp/cutune_netns_XXXXXX)
cleanup() { ip netns del "$a" 2>/dev/null; ip netns del "$b" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
ip netns add "$a" 2>"$work/err" || skip "ip netns add is not permitted: $(cat "$work/err")"
ip netns add "$b" || skip "ip netns add is not permitted"
ip link add "$va" type veth peer name "$vb" 2>"$work/err" || skip "no veth: $(cat "$work/err")"
ip link set "$va" netns "$a" && ip link set "$vb" netns "$b" &&
    ip -n "$a" addr add 10.77.0.1/24 dev "$va" && ip -n "$b" addr add 10.77.0.2/24 dev "$vb" &&
    ip -n "$a" link set "$va" up && ip -n "$b" link set "$vb" up &&
    ip -n "$a" link set lo up && ip -n "$b" link set lo up || skip "cannot set up the veth link"

fail=0
problem() { echo "netns_rendezvous: FAIL: $*"; fail=1; }
# rank NS RANK PORT OUT: `cutune devices` as one rank of two, rank 0 at 10.77.0.1:PORT.
rank() {
    ip netns exec "$1" env -u OMPI_COMM_WORLD_RANK -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK \
        -u PMI_RANK -u SLURM_PROCID RANK="$2" WORLD_SIZE=2 MASTER_ADDR=10.77.0.1 \
        MASTER_PORT="$3" CUTUNE_RENDEZVOUS_TIMEOUT=3 "$cli" devices >"$4" 2>&1
}

# Both ranks meet, rank 1 started first (rank 0 arrives later: rank 1 retries).
rank "$b" 1 29511 "$work/ok1" &
p1=$!
sleep 0.5
rank "$a" 0 29511 "$work/ok0"
rc0=$?
wait "$p1"
rc1=$?
# A CUDA build without a usable GPU exits 1 after the rendezvous, as `cutune devices` does,
# each rank saying why.
met() { [ "$1" -eq 0 ] || { [ "$1" -eq 1 ] && grep -q "no GPU: " "$2"; }; }
met "$rc0" "$work/ok0" || problem "rank 0 exited $rc0: $(cat "$work/ok0")"
met "$rc1" "$work/ok1" || problem "rank 1 exited $rc1: $(cat "$work/ok1")"
grep -q "all 2 ranks arrived" "$work/ok0" || problem "rank 0 did not say both arrived: $(cat "$work/ok0")"
grep -q "rank 1 of 2" "$work/ok1" || problem "rank 1 did not print its line: $(cat "$work/ok1")"

# A wrong port: rank 1 fails within the timeout, naming where it looked.
rank "$a" 0 29512 "$work/port0" &
p0=$!
start=$(date +%s)
rank "$b" 1 29513 "$work/port1"
rc1=$?
took=$(($(date +%s) - start))
wait "$p0"
[ "$rc1" -ne 0 ] || problem "rank 1 succeeded against a wrong port"
[ "$took" -le 5 ] || problem "rank 1 took $took s to fail with a 3 s timeout"
grep -q "rank 0 at 10.77.0.1:29513" "$work/port1" ||
    problem "rank 1's message lacks the address and port: $(cat "$work/port1")"

# Rank 1 never started: rank 0 fails within the timeout naming it.
start=$(date +%s)
rank "$a" 0 29514 "$work/alone0"
rc0=$?
took=$(($(date +%s) - start))
[ "$rc0" -ne 0 ] || problem "rank 0 succeeded without rank 1"
[ "$took" -le 5 ] || problem "rank 0 took $took s to fail with a 3 s timeout"
grep -q "rank 1 of 2 never arrived" "$work/alone0" ||
    problem "rank 0's message does not name rank 1: $(cat "$work/alone0")"

[ "$fail" -eq 0 ] && echo "netns_rendezvous: ranks meet across the veth link; a wrong port and a" \
    "missing rank fail within the timeout, named"
exit "$fail"
