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
name=run-load-bench
# shellcheck source=bench/lib.sh source-path=SCRIPTDIR/..
. "$root/bench/lib.sh"
db_dir=${DB_DIR:-/dev/shm}
max_conn=${MAX_CONNECTIONS:-1024}

short=false
if [ "${1:-}" = --short ]; then
        short=true
        shift
fi
bench_parse_json "$@"

if [ -n "${BROKERD_BIN:-}" ] && [ -n "${LOAD_BENCH_BIN:-}" ]; then
        brokerd=$BROKERD_BIN
        bench=$LOAD_BENCH_BIN
else
        build=${BUILD_DIR:-"$root/build-load"}
        bench_build "$build" brokerd/daemon/brokerd bench/load-bench
        brokerd=$build/brokerd/daemon/brokerd
        bench=$build/bench/load-bench
fi

dir=
pid=
trap bench_cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

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

fs=$(bench_fstype "$dir")
{
        bench_machine
        echo "database and sockets in $dir (${fs:-$(stat -f -c %T "$dir")}); brokerd --max-connections-per-uid $max_conn ${pending}"
        echo
} >&"$banner"

# shellcheck disable=SC2086 # $pending is empty or two words
"$brokerd" --platform "$root/docs/examples/platform.json" --policy "$dir/policy.json" \
        --db "$dir/brokerd.db" --agent-socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" \
        --max-connections-per-uid "$max_conn" $pending --log-target stderr 2> "$dir/brokerd.log" &
pid=$!
bench_wait_sockets "$pid" 400 "$dir/brokerd.log" "$dir/agent.sock" "$dir/admin.sock"

status=0
"$bench" --pid "$pid" "$@" || status=$?

bench_stop_daemon pid "$dir/brokerd.log"
if [ "$status" -ne 0 ]; then
        bench_fail_log "$dir/brokerd.log" "load-bench failed (status $status); brokerd's log ends with:"
fi
exit 0
