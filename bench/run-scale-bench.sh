#!/bin/sh
# Builds brokerd and brokerctl in release mode and runs bench/scale-bench.py in a fresh temp
# directory: two daemons side by side (the memfd backend), one with N live regions of 4 KiB
# and one with 10, each under an fd store the bench plays (docs/bench-scale.md). It prints
# what creating the N regions took, RSS per region, region.share latency at N against 10,
# paging through all N (region.list, brokerctl list), the fds held, and a restart on the same
# database. brokerd and the store each hold two fds per region (the memfd and the owner's
# pidfd), so the hard RLIMIT_NOFILE must allow 2 x N + 1024: the bench raises its soft limit
# and says so when the hard one is too low (raising that takes CAP_SYS_RESOURCE).
#
#   --regions N     live regions of the big daemon (default 100000)
#   --backing shm   the pool file-backed in the temp directory instead of memfd: regions
#                   survive a restart without an fd store
#   --no-fdstore    no $NOTIFY_SOCKET (memfd regions then die with each daemon)
#
# Other arguments go to scale-bench.py (--rounds, --samples, --window, --small, --perf-restart).
# BUILD_DIR overrides the build directory (default: build-scale in the repository root);
# BROKERD_BIN and BROKERCTL_BIN, both set, use those binaries and build nothing (meson test
# scale-quick, suite bench: 200 regions, figures not to be read);
# DB_DIR is where the temp directory goes (default /dev/shm: tmpfs).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
name=run-scale-bench
# shellcheck source=bench/lib.sh source-path=SCRIPTDIR/..
. "$root/bench/lib.sh"
db_dir=${DB_DIR:-/dev/shm}

if [ -n "${BROKERD_BIN:-}" ] && [ -n "${BROKERCTL_BIN:-}" ]; then
        brokerd=$BROKERD_BIN
        brokerctl=$BROKERCTL_BIN
else
        build=${BUILD_DIR:-"$root/build-scale"}
        bench_build "$build" brokerd/daemon/brokerd client/brokerctl
        brokerd=$build/brokerd/daemon/brokerd
        brokerctl=$build/client/brokerctl
fi

dir=
bench=
# The bench kills its daemons itself; these are for when it cannot (killed, or a crash).
# shellcheck disable=SC2317 # called by the trap
cleanup() {
        bench_kill_quiet "$bench"
        if [ -n "$dir" ]; then
                if [ -f "$dir/pids" ]; then
                        while read -r p; do
                                kill -9 "$p" 2>/dev/null || true
                        done < "$dir/pids"
                fi
                rm -rf "$dir"
        fi
        dir=
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

dir=$(mktemp -d "$db_dir/brokerd-scale.XXXXXX")
fs=$(bench_fstype "$dir")
bench_machine
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg); databases in $dir (${fs:-$(stat -f -c %T "$dir")})"

status=0
python3 "$root/bench/scale-bench.py" --brokerd "$brokerd" --brokerctl "$brokerctl" --dir "$dir" "$@" &
bench=$!
wait "$bench" || status=$?
bench=
if [ "$status" -ne 0 ]; then
        for l in "$dir"/*/brokerd.log; do
                [ -f "$l" ] && bench_fail_log "$l" "scale-bench failed (status $status); $l ends with:"
        done
        exit 1
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit 0
