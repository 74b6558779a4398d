#!/bin/sh
# Builds brokerd and data-plane-bench in release mode, starts brokerd (the memfd backend,
# docs/examples/platform.json, a policy that lets the calling uid act for hw0 and vm1) on sockets
# and a database in a fresh temp directory, and runs data-plane-bench against it: TCP, a Unix
# stream socket and libbrokerd-channel over a region hw0 shares and vm1 attaches, side by side
# (docs/bench-data-plane.md). A full run takes about two minutes.
#
#   --quick   a hundredth of the iterations: the smoke test (meson test data-plane-quick)
#
# Other arguments go to data-plane-bench (--transports LIST, --cpus A,B, --ring-size BYTES, ...).
# BUILD_DIR overrides the build directory (default: build-bench in the repository root);
# BROKERD_BIN and DATA_PLANE_BENCH_BIN, both set, use those binaries and build nothing (meson
# test); RUN_DIR is where the temp directory goes (default /dev/shm); AUTOGROUP_NICE (root, e.g.
# -20) runs the benchmark in a session of its own with that autogroup nice, so that processes of
# other sessions (builds, fuzzers: the scheduler shares the CPUs between sessions, whatever their
# nice) take little of the two CPUs it measures on.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
name=run-data-plane-bench
# shellcheck source=bench/lib.sh source-path=SCRIPTDIR/..
. "$root/bench/lib.sh"
run_dir=${RUN_DIR:-/dev/shm}

if [ -n "${BROKERD_BIN:-}" ] && [ -n "${DATA_PLANE_BENCH_BIN:-}" ]; then
        brokerd=$BROKERD_BIN
        bench=$DATA_PLANE_BENCH_BIN
else
        build=${BUILD_DIR:-"$root/build-bench"}
        bench_build "$build" brokerd/daemon/brokerd bench/data-plane-bench
        brokerd=$build/brokerd/daemon/brokerd
        bench=$build/bench/data-plane-bench
fi

dir=
pid=
bench_pid=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
        bench_kill_quiet "$bench_pid"
        bench_pid=
        bench_cleanup
}
trap cleanup EXIT
# A reader that goes away (| head) or a hangup ends the run through the trap too, not around it.
trap 'exit 130' INT TERM HUP PIPE

dir=$(mktemp -d "$run_dir/brokerd-dataplane.XXXXXX")
uid=$(id -u)
cat > "$dir/policy.json" <<EOF
{
  "agents": [ { "uid": $uid, "domains": ["hw0", "vm1"] } ],
  "shares": [
    { "sharer": "hw0", "device": "nic0", "peers": ["vm1"], "access": "rw", "max_region": "64MiB" }
  ]
}
EOF

bench_machine
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

"$brokerd" --platform "$root/docs/examples/platform.json" --policy "$dir/policy.json" \
        --db "$dir/brokerd.db" --agent-socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" \
        --log-target stderr 2> "$dir/brokerd.log" &
pid=$!
bench_wait_sockets "$pid" 400 "$dir/brokerd.log" "$dir/agent.sock"

set -- --socket "$dir/agent.sock" --owner hw0 --peer vm1 --device nic0 "$@"
# In the background, so that a SIGTERM to this script runs the trap at once, not after the run.
if [ -n "${AUTOGROUP_NICE:-}" ]; then
        echo "autogroup nice $AUTOGROUP_NICE (a session of its own)"
        # shellcheck disable=SC2016 # expanded by the inner shell
        setsid sh -c 'echo "$1" > /proc/self/autogroup && shift && exec "$@"' sh "$AUTOGROUP_NICE" "$bench" "$@" &
else
        "$bench" "$@" &
fi
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

bench_stop_daemon pid "$dir/brokerd.log"
if [ "$status" -ne 0 ]; then
        bench_fail_log "$dir/brokerd.log" "data-plane-bench failed (status $status); brokerd's log ends with:"
fi
exit 0
