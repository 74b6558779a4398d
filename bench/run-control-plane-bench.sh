#!/bin/sh
# Builds brokerd in release mode, starts it with the example platform and policy on a database
# in tmpfs (/dev/shm) and then on disk (/var/tmp), and prints the control-plane benchmark's
# figures for both (docs/bench-control-plane.md). Run as root: the example policy lets uid 0
# act for hw0 and vm1. Arguments go to control-plane-bench (--iterations N, --warmup N, --json;
# with --json stdout is a JSON array of the two runs).
# BUILD_DIR overrides the build directory (default: build-bench in the repository root);
# SHM_DIR and DISK_DIR override the two places the database goes.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
name=run-control-plane-bench
# shellcheck source=bench/lib.sh source-path=SCRIPTDIR/..
. "$root/bench/lib.sh"
build=${BUILD_DIR:-"$root/build-bench"}
shm_dir=${SHM_DIR:-/dev/shm}
disk_dir=${DISK_DIR:-/var/tmp}

bench_require_root "the example policy lets only uid 0 act for hw0 and vm1"
bench_build "$build" brokerd/daemon/brokerd bench/control-plane-bench
brokerd=$build/brokerd/daemon/brokerd
bench=$build/bench/control-plane-bench

dir=
pid=
trap bench_cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

# Runs the benchmark against a fresh daemon whose database (and scratch database) is in $1.
run() {
        base=$1
        shift
        dir=$(mktemp -d "$base/brokerd-cpbench.XXXXXX")
        fs=$(bench_fstype "$dir")
        echo "== database in $base (${fs:-$(stat -f -c %T "$dir")}) ==" >&"$banner"
        "$brokerd" --platform "$root/docs/examples/platform.json" --policy "$root/docs/examples/policy.json" \
                --db "$dir/brokerd.db" --agent-socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" \
                --log-target stderr 2> "$dir/brokerd.log" &
        pid=$!
        bench_wait_sockets "$pid" 200 "$dir/brokerd.log" "$dir/agent.sock"

        if ! "$bench" --socket "$dir/agent.sock" --db-dir "$dir" "$@"; then
                bench_fail_log "$dir/brokerd.log" "the benchmark failed; brokerd's log ends with:"
        fi

        bench_stop_daemon pid "$dir/brokerd.log"
        rm -rf "$dir"
        dir=
}

# With --json, stdout is one JSON array of the two runs' objects and the rest goes to stderr.
bench_parse_json "$@"

bench_machine >&"$banner"
echo >&"$banner"
$json && echo "["
run "$shm_dir" "$@"
if $json; then echo ","; else echo; fi
run "$disk_dir" "$@"
$json && echo "]"
exit 0
