#!/bin/sh
# Measures what hot-plugging a region into a libvirt/QEMU guest costs through brokerd next to
# the bare libvirt calls (docs/bench-mapping.md). As root: builds brokerd and mapping-bench in
# release mode, builds the e2e guest (tests/e2e/build-guest.sh, cached), starts virtlogd and
# libvirtd only if no libvirtd answers on qemu:///system, boots two transient TCG domains
# brokerd-bench-$$-a (owner) and brokerd-bench-$$-b (peer), starts brokerd --backend libvirt on
# a temp database and sockets, runs mapping-bench against them, and removes every domain, file
# and process it started, whatever happens (trap). Arguments go to mapping-bench
# (--iterations N, --warmup N, --settle-ms MS, --size BYTES, --json; with --json stdout is
# the benchmark's JSON object and everything else goes to stderr).
# BUILD_DIR: the build directory (default build-bench in the repository root); GUEST_DIR: the
# guest cache (default /e2e-guest); RUN_BASE: where the temp directory with the database,
# sockets, FIFOs and consoles goes (default /var/tmp, on disk like /var/lib/brokerd);
# BOOT_TIMEOUT: seconds to wait for each guest (default 300); BROKERD_LOG: keep brokerd's log
# there.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
name=run-mapping-bench
# shellcheck source=bench/lib.sh source-path=SCRIPTDIR/..
. "$root/bench/lib.sh"
build=${BUILD_DIR:-"$root/build-bench"}
guest=${GUEST_DIR:-/e2e-guest}
run_base=${RUN_BASE:-/var/tmp}
boot_timeout=${BOOT_TIMEOUT:-300}
uri=qemu:///system
# Everything this run names starts with this, so that tests and other runs never collide.
prefix=brokerd-bench-$$
dom_a=$prefix-a
dom_b=$prefix-b
# brokerd names region files /dev/shm/brokerd-<pool>-<id>: with this pool they start with
# $prefix too, like the raw half's files, and one glob cleans up both.
pool=bench-$$

bench_require_root "it boots guests through qemu:///system"
bench_parse_json "$@"

dir=
bench_pid=
brokerd_pid=
domains=
virtlogd_pid=
libvirtd_pid=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
        set +e
        bench_kill_quiet "$bench_pid"
        bench_kill_quiet "$brokerd_pid"
        # Transient domains: destroying them is all it takes to make them go away (and libvirt's
        # log of each).
        for d in $domains; do
                virsh -q -c "$uri" destroy "$d" >/dev/null 2>&1
                rm -f "/var/log/libvirt/qemu/$d.log"
        done
        rm -f "/dev/shm/$prefix"-*
        if [ -n "$dir" ]; then
                if [ -n "${BROKERD_LOG:-}" ] && [ -f "$dir/brokerd.log" ]; then
                        cp "$dir/brokerd.log" "$BROKERD_LOG"
                fi
                rm -rf "$dir"
        fi
        # Only what this script started, by pid, libvirtd before the virtlogd it logs to.
        for p in $libvirtd_pid $virtlogd_pid; do
                kill "$p" 2>/dev/null
                wait "$p" 2>/dev/null
        done
        bench_pid=''
        brokerd_pid=''
        domains=''
        dir=''
        libvirtd_pid=''
        virtlogd_pid=''
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

libvirt_up() {
        virsh -q -c "$uri" uri >/dev/null 2>&1
}

bench_build "$build" brokerd/daemon/brokerd bench/mapping-bench
brokerd=$build/brokerd/daemon/brokerd
bench=$build/bench/mapping-bench
"$root/tests/e2e/build-guest.sh" "$guest" >&2

if ! libvirt_up; then
        echo "run-mapping-bench: no libvirtd answering on $uri: starting one" >&2
        # A virtlogd may run without a libvirtd; a second one would only fail on its lock.
        if ! pgrep -x virtlogd >/dev/null; then
                virtlogd >/dev/null 2>&1 &
                virtlogd_pid=$!
        fi
        libvirtd >/dev/null 2>&1 &
        libvirtd_pid=$!
        i=0
        until libvirt_up; do
                i=$((i + 1))
                if [ "$i" -gt 300 ] || ! kill -0 "$libvirtd_pid" 2>/dev/null; then
                        echo "run-mapping-bench: libvirtd did not come up" >&2
                        exit 1
                fi
                sleep 0.1
        done
fi

dir=$(mktemp -d "$run_base/brokerd-mapbench.XXXXXX")
# The QEMU user opens the FIFOs and the console files in here.
chmod 755 "$dir"

# The shape of tests/e2e/test_libvirt_e2e.py's guests (tests/e2e/domain.xml): disk-less, TCG,
# a shell on ttyS1.
domain_xml() {
        sed -e "s|\$name|$1|g" -e "s|\$guest|$guest|g" -e "s|\$cmdline|console=ttyS0 panic=-1|g" \
                -e "s|\$console|$dir/$1.console|g" -e "s|\$fifo|$dir/$1.cmd|g" "$root/tests/e2e/domain.xml"
}

for d in "$dom_a" "$dom_b"; do
        mkfifo -m 600 "$dir/$d.cmd.in" "$dir/$d.cmd.out"
        domain_xml "$d" > "$dir/$d.xml"
        # Recorded before the call, so that a create that half-succeeds is still destroyed.
        domains="$domains $d"
        virsh -q -c "$uri" create "$dir/$d.xml" >&2
done

# Ready means the guest's init is at its command loop and has said so on ttyS1: by then the
# kernel has brought up ACPI PCI hotplug, so plugs and unplugs get answered. QEMU holds both
# FIFOs open read-write, so opening one never blocks and nothing written is lost.
t0=$(date +%s)
for d in "$dom_a" "$dom_b"; do
        if ! timeout "$boot_timeout" grep -q -m 1 '@@READY' "$dir/$d.cmd.out"; then
                echo "run-mapping-bench: $d did not get ready in ${boot_timeout}s; its console ends with:" >&2
                tail -c 2000 "$dir/$d.console" >&2 2>/dev/null || true
                exit 1
        fi
done
echo "run-mapping-bench: both guests ready after $(($(date +%s) - t0))s" >&2

cat > "$dir/platform.json" <<EOF
{
  "memory": [{"name": "bank0", "base": 0, "size": "4GiB", "numa_node": 0}],
  "pools": [{"name": "$pool", "base": "1GiB", "size": "64MiB", "numa_node": 0, "granule": "4KiB",
             "backing": {"kind": "shm", "path": "/dev/shm"}}],
  "devices": [{"name": "nic0", "owner": "$dom_a", "dma_mask_bits": 64}]
}
EOF
cat > "$dir/policy.json" <<EOF
{
  "agents": [{"uid": 0, "domains": ["$dom_a", "$dom_b"]}],
  "shares": [{"sharer": "$dom_a", "device": "nic0", "peers": ["$dom_b"], "access": "rw"}]
}
EOF

"$brokerd" --platform "$dir/platform.json" --policy "$dir/policy.json" --db "$dir/brokerd.db" \
        --agent-socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" \
        --backend libvirt --libvirt-uri "$uri" --log-target stderr 2> "$dir/brokerd.log" &
brokerd_pid=$!
bench_wait_sockets "$brokerd_pid" 200 "$dir/brokerd.log" "$dir/agent.sock"

fs=$(bench_fstype "$dir")
bench_machine >&"$banner"
echo "guests: 2 TCG domains (machine pc, 1 vCPU, 256MiB); brokerd database in $dir (${fs:-?})" >&"$banner"
echo >&"$banner"

# In the background, so that a SIGTERM to this script runs the trap at once, not after the run.
"$bench" --socket "$dir/agent.sock" --owner "$dom_a" --peer "$dom_b" --device nic0 --uri "$uri" \
        --raw-prefix "$prefix-raw" "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=''
if [ "$status" -ne 0 ]; then
        bench_fail_log "$dir/brokerd.log" "the benchmark failed; brokerd's log ends with:"
fi

bench_stop_daemon brokerd_pid "$dir/brokerd.log"
exit 0
