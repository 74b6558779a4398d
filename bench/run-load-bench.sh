#!/bin/sh
# Builds brokerd in release mode, starts it on sockets and a database in a fresh temp directory
# (the memfd backend, docs/examples/platform.json, a policy that lets the calling uid act for hw0,
# vm1 and vm2 with room for every client's region), runs load-bench against it and stops it
# (docs/load.md). The full run is 64 clients x 10,000 requests plus an admin event stream and
# three slow clients; it takes a few minutes.
#
#   --short   the CI form (meson test load-short): 16 clients x 1,000 requests, and brokerd's
#             --max-pending at 256KiB so that those few requests overrun the stuck subscriber
#
# Other arguments go to load-bench (--clients N, --requests M, --seed S, --json, ...; with
# --json stdout is the bench's JSON object and the rest goes to stderr).
# BUILD_DIR overrides the build directory (default: build-load in the repository root);
# BROKERD_BIN and LOAD_BENCH_BIN, both set, use those binaries and build nothing (meson test);
# DB_DIR is where the temp directory goes (default /dev/shm: tmpfs, so that the figures are the
# daemon's and not the disk's; DB_DIR=/var/tmp puts the database on disk);
# MAX_CONNECTIONS is brokerd's --max-connections-per-uid (default 1024).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
db_dir=${DB_DIR:-/dev/shm}
max_conn=${MAX_CONNECTIONS:-1024}

short=false
if [ "${1:-}" = --short ]; then
        short=true
        shift
fi
json=false
for a in "$@"; do
        [ "$a" = --json ] && json=true
done
if $json; then banner=2; else banner=1; fi

if [ -n "${BROKERD_BIN:-}" ] && [ -n "${LOAD_BENCH_BIN:-}" ]; then
        brokerd=$BROKERD_BIN
        bench=$LOAD_BENCH_BIN
else
        build=${BUILD_DIR:-"$root/build-load"}
        if [ ! -d "$build" ]; then
                meson setup "$build" "$root" --buildtype=release >&2
        fi
        ninja -C "$build" brokerd/daemon/brokerd bench/load-bench >&2
        brokerd=$build/brokerd/daemon/brokerd
        bench=$build/bench/load-bench
fi

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

dir=$(mktemp -d "$db_dir/brokerd-load.XXXXXX")
uid=$(id -u)
# hw0 may hold a region per client at once: the quota leaves room for 256 (net0 has 128 slots
# of 2MiB, which bounds the clients at 128 with this platform).
cat > "$dir/policy.json" <<EOF
{
  "agents": [ { "uid": $uid, "domains": ["hw0", "vm1", "vm2"] } ],
  "shares": [
    { "sharer": "hw0", "device": "nic0", "peers": ["vm1"], "access": "rw", "max_region": "64MiB" },
    { "sharer": "hw0", "device": "nic0", "peers": ["vm2"], "access": "ro" }
  ],
  "quotas": [ { "domain": "hw0", "max_bytes": "1GiB", "max_regions": 256 } ]
}
EOF

set -- --socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" "$@"
pending=
if $short; then
        pending="--max-pending 256KiB"
        set -- --clients 16 --requests 1000 "$@"
fi

fs=$(findmnt -n -o FSTYPE -T "$dir" 2>/dev/null | tail -n 1)
{
        echo "machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r)"
        echo "database and sockets in $dir (${fs:-$(stat -f -c %T "$dir")}); brokerd --max-connections-per-uid $max_conn ${pending}"
        echo
} >&"$banner"

# shellcheck disable=SC2086 # $pending is empty or two words
"$brokerd" --platform "$root/docs/examples/platform.json" --policy "$dir/policy.json" \
        --db "$dir/brokerd.db" --agent-socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" \
        --max-connections-per-uid "$max_conn" $pending --log-target stderr 2> "$dir/brokerd.log" &
pid=$!
i=0
while [ ! -S "$dir/agent.sock" ] || [ ! -S "$dir/admin.sock" ]; do
        i=$((i + 1))
        if [ "$i" -gt 400 ] || ! kill -0 "$pid" 2>/dev/null; then
                echo "run-load-bench: brokerd did not start:" >&2
                cat "$dir/brokerd.log" >&2
                exit 1
        fi
        sleep 0.05
done

status=0
"$bench" --pid "$pid" "$@" || status=$?

kill "$pid"
dstatus=0
wait "$pid" || dstatus=$?
pid=
if [ "$dstatus" -ne 0 ]; then
        echo "run-load-bench: brokerd exited with status $dstatus; its log ends with:" >&2
        tail -n 20 "$dir/brokerd.log" >&2
        exit 1
fi
if [ "$status" -ne 0 ]; then
        echo "run-load-bench: load-bench failed (status $status); brokerd's log ends with:" >&2
        tail -n 20 "$dir/brokerd.log" >&2
        exit 1
fi
exit 0
