#!/bin/sh
# data-plane-bench between two libvirt guests (docs/bench-data-plane.md, "Between two guests"):
# libbrokerd-channel over an ivshmem-doorbell region against TCP over a virtio-net link (a udp
# <interface> pair, no bridge), the same cases, alternating, in one run. Builds brokerd and the e2e
# guest with guestbench (build-guest.sh, into GUEST_DIR, default /var/tmp/gb-guest), starts
# virtlogd/libvirtd if none answers, and runs bench/guest-data-plane-bench.py, which boots the two
# guests, starts brokerd --backend libvirt (the region's doorbell server: it shares the region from
# guest A with guest B, doorbells=2), runs and prints, and cleans up. DOORBELL_SERVER=harness serves
# the region with tests/e2e/ivshmem-server-harness (brokerd's ivshmem server alone) instead.
# Needs root. Arguments go to guest-data-plane-bench.py: --kvm (type='kvm' instead of TCG),
# --rounds N, --divide N (data-plane-bench's counts divided by N, default 10), --cases LIST,
# --transports LIST, --cpus A,B|none (host CPUs of the two QEMUs), --prefix NAME (the domains),
# --stall-timeout S (a channel run without progress, both sides asleep, is probed by a ring each
# way: a run that goes on lost a wake-up, counted; one that does not is stopped), --vcpus LIST
# (vCPU configurations N or N/M, N online of a maximum of M, a pair booted for each in turn).
# BUILD_DIR overrides the build directory (default: build-bench in the repository root).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
name=run-guest-data-plane-bench
# shellcheck source=bench/lib.sh source-path=SCRIPTDIR/..
. "$root/bench/lib.sh"
bench_require_root "libvirt, QEMU and the guests' devices"
build=${BUILD_DIR:-"$root/build-bench"}
if [ "${DOORBELL_SERVER:-brokerd}" = harness ]; then
        bench_build "$build" tests/ivshmem-server-harness
        set -- --harness "$build/tests/ivshmem-server-harness" "$@"
else
        bench_build "$build" brokerd/daemon/brokerd
        set -- --brokerd "$build/brokerd/daemon/brokerd" "$@"
fi
guest=${GUEST_DIR:-/var/tmp/gb-guest}
"$root/tests/e2e/build-guest.sh" "$guest" >&2

bench_machine
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
BROKERD_E2E_GUEST=$guest python3 "$root/bench/guest-data-plane-bench.py" "$@" || status=$?
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
