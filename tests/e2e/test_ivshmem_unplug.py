#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Unplugging ivshmem-doorbell from a TCG guest, cycle after cycle (docs/guest-doorbells.md,
"Unplug under TCG").

QEMU 7.2 (and upstream since) leaves the fd handlers of the device's own vector eventfds
registered after the unplug closed them: the main loop polls closed fds (POLLNVAL) and spins, and
whatever fd next takes such a number wakes a handler whose device state was freed (a segfault).
The mitigation: right after the unplug, QMP `getfd` hands QEMU never-signalled eventfds that
take the stale numbers. Even cycles fill exactly as brokerd's libvirt backend does
(brokerd/backend/libvirt-stale.c: until each stale number holds one, the others closed again;
that needs a look into QEMU's fds), odd ones by count, as brokerd could without that look: as
many placeholders as QEMU held fds for the device (its socket, the memfd, `vectors` eventfds per
peer including itself), all kept; each takes the lowest free number, so together they take the
numbers the unplug freed, the stale ones among them.

No libvirt: tests/e2e/ivshmem-server-harness serves the group, a bare stopped QEMU A is a peer
that stays, a bare QEMU G boots the e2e guest (its driver binds the device and enables MSI-X), and
each of UNPLUG_CYCLES (default 4) cycles on G:

1. plugs the doorbell (the harness expects the QEMU's pid), notes the fd numbers of the device's
   own vector eventfds in QEMU (kcmp against the server's copies: harness `fds`), the guest sees
   its id and is woken by a ring of vector 0 from the server; G holds A's eventfds (as a
   survivor of departed peers does when it is sent no peer-gone);
2. unplugs it (device_del, then chardev-remove once the guest ejected it), the server sees it go;
   cycles 1, 5, ... unload the guest's driver first (MSI-X off), cycles 2, 6, ... plugged with
   ioeventfd off: neither removes the spin (reported, not asserted);
3. measures the QEMU's CPU over one second with the holes open (reported: the spin);
4. fills the holes (exactly or by count): the stale numbers are among those the placeholders
   took (checked here as root), the QEMU does not spin, its monitor and the guest answer, and it
   is alive.
After the cycles, eight chardev sockets that become readable take the next fd numbers: the QEMU
stays alive (without the placeholders one of them lands on a stale number: SIGSEGV).
Last, reported and not asserted: a QEMU that processed a peer-gone dies (SIGABRT or SIGSEGV) when
its device is unplugged (a double g_free() in QEMU; the reason brokerd sends no peer-gone).

Needs root, qemu-system-x86_64 and BROKERD_E2E=1 (exit 77 otherwise); builds the guest with
build-guest.sh into BROKERD_E2E_GUEST (default /e2e-guest, cached). Stops every process it
started, by pid.
"""
import json
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_ivshmem_server  # noqa: E402
from test_guest_channel import BootedGuest, build_guest  # noqa: E402
from test_libvirt_e2e import log, wait_for  # noqa: E402
from test_ivshmem_server import VECTORS, Harness, Qemu, QmpError  # noqa: E402

CYCLES = int(os.environ.get("UNPLUG_CYCLES", "4"))
HZ = os.sysconf("SC_CLK_TCK")


def fd_numbers(qemu):
    return {int(n) for n in os.listdir(f"/proc/{qemu.pid}/fd")}


def cpu_ticks_in(qemu, seconds):
    ticks = qemu.cpu_ticks()
    time.sleep(seconds)
    return qemu.cpu_ticks() - ticks


def qmp_with_fd(qemu, execute, fd, **arguments):
    """A QMP command carrying fd (SCM_RIGHTS), as `getfd` wants it."""
    socket.send_fds(qemu.sock, [json.dumps({"execute": execute, "arguments": arguments}).encode() + b"\n"], [fd])
    while True:
        reply = json.loads(qemu.file.readline())
        if "return" in reply:
            return reply["return"]
        if "error" in reply:
            raise QmpError(reply["error"].get("desc", ""))


def placeholder(qemu, name):
    """getfd of a fresh eventfd that nobody keeps a copy of (never signalled); the numbers it took
    (read here as root, for the checks)."""
    before = fd_numbers(qemu)
    efd = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        qmp_with_fd(qemu, "getfd", efd, fdname=name)
    finally:
        os.close(efd)
    return fd_numbers(qemu) - before


def fill_exactly(qemu, stale, tag):
    """What brokerd does where it may look into QEMU's fds (root or CAP_SYS_PTRACE:
    libvirt-stale.c): placeholders until each stale number holds one, the others closed again.
    Returns the numbers kept."""
    placed = []
    for k in range(64):
        if all(os.path.exists(f"/proc/{qemu.pid}/fd/{n}") for n in stale):
            break
        placed.append((f"hole-{tag}-{k}", placeholder(qemu, f"hole-{tag}-{k}")))
    kept = set()
    for name, numbers in placed:
        if numbers & set(stale):
            kept |= numbers
        else:
            qemu.qmp("closefd", fdname=name)
    return sorted(kept)


def fill_by_count(qemu, count, tag):
    """What brokerd could do without looking into QEMU's fds: `count` placeholders, all kept. Each
    takes the lowest free number, so they take the numbers the unplug freed when count is what
    QEMU held for the device. Returns the numbers they took."""
    taken = set()
    for k in range(count):
        taken |= placeholder(qemu, f"hole-{tag}-{k}")
    return sorted(taken)


def unplug(guest, harness, peer_id):
    guest.qmp("device_del", id="ua-dbell")
    wait_for(f"{guest.name} to eject the doorbell", guest.chardev_free, 60)
    gone = harness.read_line().split()
    assert gone[:3] == ["gone", str(peer_id), f"dom-{guest.name}"], gone
    assert guest.run("ls /dev/ivshmem-doorbell0 2>/dev/null || echo none") == "none"


def peer_fds_in(harness, n, pid):
    """The fd numbers in pid of peer n's vector eventfds, by kcmp against the server's copies
    (what brokerd's unplug notes before it unplugs); -1 for a vector pid does not hold."""
    harness.proc.stdin.write(f"fds {n} {pid}\n")
    harness.proc.stdin.flush()
    line = harness.read_line().split()
    harness.expect_line("ok")
    assert line[0] == "fds", line
    return [int(x) for x in line[1:]]


# What each cycle does differently (n % 4): the variants the code suggests might avoid the spin.
VARIANTS = ("plain", "driver unloaded before the unplug (MSI-X off)", "ioeventfd off", "plain")


def cycle(harness, g, path, n):
    """Plug/ring/unplug number n (peer id n + 1, after A's 0); returns the QEMU's fd numbers of
    that device's own vectors and the variant."""
    variant = VARIANTS[n % len(VARIANTS)]
    n += 1
    harness.command(f"expect dom-{g.name} {g.pid}")
    g.attach_doorbell(path, ioeventfd=variant != "ioeventfd off")
    harness.expect_line(f"joined {n} dom-{g.name}")
    # The own vectors' eventfds come after realize, from QEMU's main loop.
    own = wait_for("the own eventfds in QEMU", lambda: (lambda f: f if -1 not in f else None)(peer_fds_in(harness, n, g.pid)), 10)
    assert len(own) == 2, own
    wait_for("the driver to bind", lambda: g.run("ls /dev/ivshmem-doorbell0 2>/dev/null || echo none") != "none", 60)
    m = re.fullmatch(r"ID (\d+) VECTORS 2 SIZE \d+", g.run("chantool info"))
    assert m and int(m.group(1)) == n, m
    before = g.doorbell_interrupts()
    harness.command(f"ring {n} 0")
    wait_for("the ring's interrupt", lambda: g.doorbell_interrupts() > before, 30)
    # What a survivor of departed peers looks like to QEMU when it got no peer-gone: it still
    # holds their eventfds. Here A's, at every unplug.
    assert -1 not in peer_fds_in(harness, 0, g.pid), "G does not hold A's eventfds"
    if variant.startswith("driver unloaded"):
        g.run("rmmod ivshmem_doorbell")
        assert g.doorbell_interrupts() == 0  # its MSI-X vectors are freed
    unplug(g, harness, n)
    if variant.startswith("driver unloaded"):
        g.run("insmod /lib/modules/ivshmem_doorbell.ko")
    return own, variant


def probe_fd_reuse(g, rundir, count=8):
    """Chardev sockets take the next free numbers and become readable: a stale handler on one of
    those numbers would run with freed state."""
    path = os.path.join(rundir, "probe.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(count)
    conns = []
    try:
        for k in range(count):
            g.qmp("chardev-add", id=f"probe{k}",
                  backend={"type": "socket", "data": {"addr": {"type": "unix", "data": {"path": path}}, "server": False}})
            conns.append(listener.accept()[0])
        for c in conns:
            c.send(b"x" * 8)
        time.sleep(1)
        assert g.proc.poll() is None, f"QEMU died on fd reuse: {g.proc.returncode}"
        assert g.qmp("query-status", timeout=5)["status"] == "running"
        for k in range(count):
            g.qmp("chardev-remove", id=f"probe{k}")
    finally:
        for c in conns:
            c.close()
        listener.close()


def peer_gone_then_unplug(harness, rundir, path, n):
    """Reported, not asserted: QEMU 7.2 frees a departed peer's eventfd array on peer-gone and
    again on unplug (close_peer_eventfds). A fresh guest G and a bare peer A."""
    g = BootedGuest("unplug-h", rundir)
    a = None
    try:
        g.boot()
        a = Qemu("unplug-p", rundir)
        harness.command(f"expect dom-{a.name} {a.pid}")
        a.attach_doorbell(path)
        harness.expect_line(f"joined {n} dom-{a.name}")
        harness.command(f"expect dom-{g.name} {g.pid}")
        g.attach_doorbell(path)
        harness.expect_line(f"joined {n + 1} dom-{g.name}")
        wait_for("the driver to bind", lambda: g.run("ls /dev/ivshmem-doorbell0 2>/dev/null || echo none") != "none", 60)
        held = g.eventfds()
        harness.command(f"remove {n}", f"gone {n} dom-{a.name} removed")
        wait_for("G to process the peer-gone", lambda: g.eventfds() == held - VECTORS, 10)
        g.qmp("device_del", id="ua-dbell")

        def removed_or_dead():
            try:
                g.qmp("chardev-remove", id="charua-dbell", timeout=5)
                return True
            except QmpError:
                return g.proc.poll() is not None
            except (OSError, ValueError, AssertionError):  # QMP reset or closed: QEMU is gone
                return True
        wait_for("G's QEMU to eject the doorbell or to die", removed_or_dead, 60)
        time.sleep(1)
        rc = g.proc.poll()
        if rc is not None and rc < 0:
            log(f"peer-gone, then unplug: QEMU died of {signal.Signals(-rc).name} (the heap corrupted by "
                f"QEMU 7.2's double free; stderr: {open(os.path.join(rundir, g.name + '.log')).read().strip()!r})")
        else:
            log(f"peer-gone, then unplug: QEMU {'alive' if rc is None else f'exited {rc}'}; "
                "the double free of QEMU 7.2 did not show: check docs/guest-doorbells.md against this QEMU")
    finally:
        if a:
            a.stop()
        g.stop()


def run(rundir, binary):
    build_guest()
    path = os.path.join(rundir, "group.sock")
    harness = Harness(binary, path)
    started = [harness]
    try:
        # A, a peer that stays (a bare QEMU, never unplugged): G holds its eventfds.
        a = Qemu("unplug-a", rundir)
        started.append(a)
        harness.command(f"expect dom-{a.name} {a.pid}")
        a.attach_doorbell(path)
        harness.expect_line(f"joined 0 dom-{a.name}")
        g = BootedGuest("unplug-g", rundir)
        started.append(g)
        g.boot()
        spins = []
        for n in range(CYCLES):
            stale, variant = cycle(harness, g, path, n)
            spun = cpu_ticks_in(g, 1.0)
            spins.append(spun)
            if n % 2 == 0:
                fill = "exact"
                taken = fill_exactly(g, stale, n)
            else:
                # G's QEMU held for the device: its socket, the memfd, its own and A's vectors.
                fill = "by count"
                taken = fill_by_count(g, 2 + 2 * VECTORS, n)
            assert set(stale) <= set(taken), f"placeholders at {taken} missed stale fds {stale}"
            quiet = cpu_ticks_in(g, 1.0)
            log(f"cycle {n} ({variant}): stale fds {stale}; CPU in 1 s: {spun}/{HZ} ticks with the holes open, "
                f"{quiet}/{HZ} with placeholders ({fill}) at {taken}")
            assert quiet < HZ // 2, f"{quiet} ticks of CPU in 1 s with the placeholders: still spinning"
            assert g.qmp("query-status", timeout=5)["status"] == "running"
            assert g.run("echo alive") == "alive"
            assert g.proc.poll() is None
        log(f"spin after each unplug (ticks of {HZ} per s): {spins}")
        probe_fd_reuse(g, rundir)
        log(f"{CYCLES} cycles: QEMU alive, monitor and guest answer, fd reuse harmless")
        g.stop()
        peer_gone_then_unplug(harness, rundir, path, CYCLES + 1)
    finally:
        for p in reversed(started):
            p.stop()


if __name__ == "__main__":
    sys.exit(test_ivshmem_server.main(run, "brokerd-ivshmem-unplug-"))
