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
build=${BUILD_DIR:-"$root/build-bench"}
shm_dir=${SHM_DIR:-/dev/shm}
disk_dir=${DISK_DIR:-/var/tmp}

if [ "$(id -u)" -ne 0 ]; then
        echo "run-control-plane-bench: run as root: the example policy lets only uid 0 act for hw0 and vm1" >&2
        exit 1
fi

if [ ! -d "$build" ]; then
        meson setup "$build" "$root" --buildtype=release
fi
ninja -C "$build" brokerd/daemon/brokerd bench/control-plane-bench >&2
brokerd=$build/brokerd/daemon/brokerd
bench=$build/bench/control-plane-bench

dir=
pid=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
        if [ -n "$pid" ]; then
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
        fi
        if [ -n "$dir" ]; then
                rm -rf "$dir"
        fi
        pid=
        dir=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs the benchmark against a fresh daemon whose database (and scratch database) is in $1.
run() {
        base=$1
        shift
        dir=$(mktemp -d "$base/brokerd-cpbench.XXXXXX")
        # /dev/shm may be mounted more than once; the last mount is the one in use.
        fs=$(findmnt -n -o FSTYPE -T "$dir" 2>/dev/null | tail -n 1)
        echo "== database in $base (${fs:-$(stat -f -c %T "$dir")}) ==" >&"$banner"
        "$brokerd" --platform "$root/docs/examples/platform.json" --policy "$root/docs/examples/policy.json" \
                --db "$dir/brokerd.db" --agent-socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" \
                --log-target stderr 2> "$dir/brokerd.log" &
        pid=$!
        i=0
        while [ ! -S "$dir/agent.sock" ]; do
                i=$((i + 1))
                if [ "$i" -gt 200 ] || ! kill -0 "$pid" 2>/dev/null; then
                        echo "run-control-plane-bench: brokerd did not start:" >&2
                        cat "$dir/brokerd.log" >&2
                        exit 1
                fi
                sleep 0.05
        done

        if ! "$bench" --socket "$dir/agent.sock" --db-dir "$dir" "$@"; then
                echo "run-control-plane-bench: the benchmark failed; brokerd's log ends with:" >&2
                tail -n 20 "$dir/brokerd.log" >&2
                exit 1
        fi

        kill "$pid"
        status=0
        wait "$pid" || status=$?
        pid=
        if [ "$status" -ne 0 ]; then
                echo "run-control-plane-bench: brokerd exited with status $status:" >&2
                tail -n 20 "$dir/brokerd.log" >&2
                exit 1
        fi
        rm -rf "$dir"
        dir=
}

# With --json, stdout is one JSON array of the two runs' objects and the rest goes to stderr.
json=false
for a in "$@"; do
        [ "$a" = --json ] && json=true
done
if $json; then banner=2; else banner=1; fi

echo "machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r)" >&"$banner"
echo >&"$banner"
$json && echo "["
run "$shm_dir" "$@"
if $json; then echo ","; else echo; fi
run "$disk_dir" "$@"
$json && echo "]"
exit 0
