#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""End to end through brokerd and libvirt: doorbell regions between two real guests.

Boots three transient TCG domains (machine pc, disk-less: tests/e2e/build-guest.sh; the guests
load ivshmem_doorbell.ko and carry chantool, docs/guest-doorbells.md) and runs brokerd with
--backend libvirt --ivshmem-dir under an fd store (tests/integration/fdstore.py plays systemd's),
as systemd would with FileDescriptorStoreMax=. Everything goes through the RPC; the witnesses are
outside brokerd: the live XML (virsh dumpxml), each QEMU's eventfds (/proc/PID/fd), the guests'
doorbell interrupts (/proc/interrupts) and what chantool does inside them.

1. A shares a region with `"doorbells": 2` with B, B attaches: both guests get an ivshmem-doorbell
   device (alias ua-brokerd-<id>) served on <ivshmem-dir>/region-<id>.sock; the ids chantool reads
   (IVPosition) differ; A's QEMU gained B's 2 eventfds when B joined. B runs `chantool create`, A
   `chantool join`: each of A's messages wakes B by interrupt (B's doorbell interrupts grow) and
   B's answer comes back, checked.
2. C holds no grant on it: a doorbell device pointing at the region's socket, attached to C by
   hand (virsh attach-device), fails with "server sent version -1"; C still answers on its console,
   its live XML has no such device, and brokerd's audit records the refusal of C's QEMU (its pid).
3. brokerd is SIGKILLed while A and B exchange messages and started again with what the fd store
   kept: the exchange in flight completes, A's and B's QEMUs kept their eventfds, reconciliation
   finds nothing to repair, a new exchange works, and a doorbell region granted after the restart
   (2 MiB, to B and C; the guests' second device, CHANTOOL_DEVICE) works too, beside the first.
4. B releases the second region (C's grant, never redeemed, keeps it live): the device leaves B,
   A's device stays; A's agent gets region.left for B (brokerd's peer-gone: it sends none to the
   QEMUs, since QEMU 7.2 aborts at the unplug of a device that processed one, docs/guest-doorbells.md
   "Unplug under TCG"); no eventfd of that region is in both A's and B's QEMUs any more (kcmp:
   before, each held the other's vectors), and a ring from A to B's old id raises none of B's
   interrupts (a ring on the first region right after it does).
   Then C redeems its grant: C, defined with a maximum of one vCPU (A and B have two, so that TCG
   emits their memory barriers: docs/guest-doorbells.md), gets the device, and brokerd's log warns
   of C and of no other guest.
5. The admin revokes the first region for everyone: the device leaves both guests, the region is
   reclaimed, its socket removed. The owner revokes the second with a 1 s deadline that C's agent
   lets pass: the device leaves A and C. Nothing is
   left: no region, nothing in the fd store, nothing in the ivshmem directory.

QEMU 7.2 under TCG keeps stale fd handlers after a doorbell unplug (docs/guest-doorbells.md, "Unplug
under TCG"; brokerd fills their numbers): the unplugs come last, and the guests are destroyed at
the end.

Needs root and BROKERD_E2E=1 (exit 77 otherwise). Starts virtlogd/libvirtd if no libvirtd
answers, and stops only what it started, by pid. BROKERD_E2E_GUEST: the guest cache dir;
BROKERD_E2E_DOMAIN_PREFIX: the start of the domains' names.
"""
import json
import os
import re
import signal
import stat
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from e2e_guests import (URI, Guest, build_guest, doorbell_devices, doorbell_interrupts, domain_prefix,  # noqa: E402
                        eventfds, log, shared_eventfds, shm_platform, started_daemons, stored_daemon, tear_down,
                        unix_sockets, vector_interrupts, virsh, wait_for)

VECTORS = 2
SIZES = (1 << 20, 2 << 20)  # the first region and the one granted after the restart: told apart by size
PINGS = int(os.environ.get("DOORBELL_E2E_PINGS", "200"))
# The exchange brokerd is killed in: long enough to be still running after the restart.
LONG_PINGS = int(os.environ.get("DOORBELL_E2E_LONG_PINGS", "5000"))
MESSAGE = 64


class Doorbells:
    """The three guests, brokerd under its fd store, its agents, and the checks."""

    def __init__(self, harness, a, b, c, d, ivshmem_dir):
        self.h, self.a, self.b, self.c, self.d = harness, a, b, c, d
        self.ivshmem_dir = ivshmem_dir
        self.owner = self.peer = self.admin = None
        self.c_token = None

    def start(self):
        self.d.start()
        self.owner, self.peer, self.admin = self.d.agent(), self.d.agent(), self.d.admin()
        self.owner.call("events.subscribe", {"domains": [self.a.name]})
        self.peer.call("events.subscribe", {"domains": [self.b.name]})

    def socket_path(self, region):
        return os.path.join(self.ivshmem_dir, f"region-{region}.sock")

    def share(self, size, peers=()):
        """A doorbell region of A's, granted to B (and peers)."""
        r = self.owner.call("region.share", {"owner": self.a.name, "device": "nic0", "size": size,
                                             "doorbells": VECTORS,
                                             "peers": [{"domain": d, "access": "rw"} for d in (self.b.name, *peers)]})
        assert r["placement"] == "region" and r["size"] == size and r["vectors"] == VECTORS, r
        return r

    def attach(self, r):
        return self.peer.call("region.attach", {"domain": self.b.name, "token": r["tokens"][0]["token"]})

    def wait_reclaimed(self, region, timeout=60):
        while True:
            n = self.owner.wait_notification("region.reclaimed", timeout=timeout)
            if n["params"]["region"] == region:
                return n

    def device(self, guest, size):
        """The name of guest's doorbell device of that size, and its (id, vectors, size)."""
        found = wait_for(f"{guest.name}'s doorbell device of {size} bytes",
                         lambda: [(n, i) for n, i in doorbell_devices(guest).items() if i[2] == size], 30)
        assert len(found) == 1, found
        name, info = found[0]
        assert info[1] == VECTORS, info
        return name, info[0]

    def plugged(self, region, size):
        """Both guests have the region's device: returns {guest name: (device, own id)}."""
        alias = f"ua-brokerd-{region}"
        xml = {g.name: virsh("dumpxml", g.name).stdout for g in (self.a, self.b)}
        for name, text in xml.items():
            m = re.search(r"<shmem\b[^>]*>(?:(?!</shmem>).)*<alias name='%s'/>.*?</shmem>" % alias, text, re.S)
            assert m, f"{name} has no {alias}"
            dev = m.group(0)
            assert "<model type='ivshmem-doorbell'/>" in dev, dev
            assert f"<server path='{self.socket_path(region)}'/>" in dev, dev
            assert re.search(r"<msi vectors='%d' ioeventfd='on'/>" % VECTORS, dev), dev
        return {g.name: self.device(g, size) for g in (self.a, self.b)}

    @staticmethod
    def guest_ids(reply):
        """The parties' ids in the region's group as brokerd tells an agent (attach, region.doorbells)."""
        assert reply["doorbells"] == [], reply  # no host eventfds: the doorbells are in the guests
        return {g["domain"]: g["id"] for g in reply["guests"]}

    def exchange(self, devs, pings=PINGS, background=False, tag="x"):
        """B answers (chantool create), A sends (chantool join): every message wakes B by
        interrupt. In the background: returns at once; finish() waits for both ends."""
        (dev_a, id_a), (dev_b, id_b) = devs[self.a.name], devs[self.b.name]
        self.b.check(f"CHANTOOL_DEVICE=/dev/{dev_b} chantool create {id_a} >/tmp/{tag}.srv 2>&1 &")
        join = f"CHANTOOL_DEVICE=/dev/{dev_a} chantool join {id_b} {pings} {MESSAGE}"
        if background:
            self.a.check(f"({join}; echo EXIT $?) >/tmp/{tag}.join 2>&1 &")
            return None
        out = self.a.check(join, timeout=600)
        return self.finished(out, pings, tag)

    def finished(self, out, pings, tag):
        rtts = [line for line in out.splitlines() if line.startswith("RTT ")]
        assert len(rtts) == 2 and all(f" n={pings} " in line for line in rtts), out
        # Waits that ran out a slice without a ring (QEMU 7.2's TCG, one vCPU: docs/guest-doorbells.md).
        print("A: " + next((line for line in out.splitlines() if line.startswith("SLICES_EXPIRED")), "SLICES_EXPIRED ?"),
              flush=True)
        wait_for(f"B's {tag} server to finish", lambda: f"SERVED {2 * pings}" in self.b.check(f"cat /tmp/{tag}.srv"), 60)
        return rtts

    def finish(self, pings, tag):
        out = wait_for(f"A's {tag} exchange to end", lambda: (lambda t: t if "EXIT" in t else None)(
            self.a.check(f"cat /tmp/{tag}.join")), 600)
        assert "EXIT 0" in out, f"A's exchange failed: {out}"
        return self.finished(out, pings, tag)

    def audit(self):
        return self.admin.call("admin.audit", {"newest": 1000})["entries"]

    # ---- 1: a doorbell region, the channel between the guests

    def first_region(self):
        a_qemu = self.a.qemu_pid()
        r = self.share(SIZES[0])
        region = r["region"]
        st = os.stat(self.socket_path(region))
        assert stat.S_ISSOCK(st.st_mode) and st.st_mode & 0o007 == 0, oct(st.st_mode)  # the QEMU user, nobody else
        wait_for("A's device", lambda: self.a.has_alias(f"ua-brokerd-{region}"), 30)
        wait_for("A's QEMU to settle its own eventfds", lambda: eventfds(a_qemu) > 0, 10)
        alone = eventfds(a_qemu)
        att = self.attach(r)
        assert att["region"] == region and att["vectors"] == VECTORS, att
        devs = self.plugged(region, SIZES[0])
        ids = {n: i for n, (_, i) in devs.items()}
        assert ids[self.a.name] != ids[self.b.name], ids
        assert self.guest_ids(att) == ids, (att, ids)  # what B's agent tells B: whom to ring
        wait_for("B's eventfds in A's QEMU", lambda: eventfds(a_qemu) == alone + VECTORS, 30)
        served = sorted(unix_sockets(self.d.proc.pid, self.ivshmem_dir).values())
        path = self.socket_path(region)
        assert served == [(path, False), (path, False), (path, True)], served  # listening, A's and B's QEMU
        # The very eventfds: A's QEMU holds B's vectors and B's QEMU A's (and each its own).
        assert shared_eventfds(a_qemu, self.b.qemu_pid()) == 2 * VECTORS
        log(f"region {region}: doorbell devices in both guests, ids {ids}; A's QEMU eventfds {alone} -> "
            f"{eventfds(a_qemu)}")
        before = doorbell_interrupts(self.b, devs[self.b.name][0])
        for line in self.exchange(devs, tag="first"):
            log(f"A: {line}")
        woken = doorbell_interrupts(self.b, devs[self.b.name][0]) - before
        assert woken > 0, "B took no doorbell interrupt"
        log(f"A's {2 * PINGS} messages woke B by {woken} interrupts; every answer checked")
        return region, devs

    # ---- 2: a guest without the grant

    def intruder_refused(self, region):
        c, path = self.c, self.socket_path(region)
        xml = os.path.join(os.path.dirname(c.fifo), c.name + ".intruder.xml")
        with open(xml, "w") as f:
            f.write(f"<shmem name='{c.name}-intruder'><model type='ivshmem-doorbell'/><server path='{path}'/>"
                    f"<msi vectors='{VECTORS}' ioeventfd='on'/><alias name='ua-intruder'/></shmem>")
        pid = c.qemu_pid()
        p = virsh("attach-device", c.name, xml, "--live", check=False)
        assert p.returncode != 0, "C's doorbell device was plugged"
        assert "server sent version -1" in p.stderr, p.stderr
        log(f"C (QEMU pid {pid}) refused: {p.stderr.strip()}")
        assert c.check("echo alive") == "alive"
        assert virsh("domstate", c.name).stdout.strip() == "running"
        assert not c.has_alias("ua-intruder")
        assert c.check("ls /dev | grep -c '^ivshmem-doorbell' || true") == "0"

        def audited():
            return [e for e in self.audit() if e.get("region") == region and str(pid) in json.dumps(e)]
        entries = wait_for("the refusal in the audit", audited, 30)
        log(f"C still answers on its console; audit: {entries[-1]}")
        assert str(pid) in self.d.read_log(), "brokerd's log does not name the refused QEMU"

    # ---- 3: SIGKILL during an exchange, restart from the fd store

    def crash_during_exchange(self, region, devs):
        pids = {g.name: g.qemu_pid() for g in (self.a, self.b)}
        fds = {n: eventfds(p) for n, p in pids.items()}
        linked = shared_eventfds(*pids.values())
        dev_b = devs[self.b.name][0]
        before = doorbell_interrupts(self.b, dev_b)
        self.exchange(devs, pings=LONG_PINGS, background=True, tag="crash")
        wait_for("the exchange to wake B", lambda: doorbell_interrupts(self.b, dev_b) > before, 60)
        assert self.d.kill() == -signal.SIGKILL
        assert "EXIT" not in self.a.check("cat /tmp/crash.join"), \
            f"the exchange ended before brokerd was killed: raise DOORBELL_E2E_LONG_PINGS ({LONG_PINGS})"
        log(f"brokerd SIGKILLed during the exchange; the fd store holds {len(self.d.store.names())} fds")
        self.start()
        got = self.owner.call("region.get", {"region": region})
        assert got["state"] == "active" and got["owner_mapped"], got
        assert [(p["domain"], p["state"], p["mapped"]) for p in got["peers"]] == [(self.b.name, "attached", True)], got
        ids = {n: i for n, (_, i) in devs.items()}
        assert self.guest_ids(self.peer.call("region.doorbells", {"domain": self.b.name, "region": region})) == ids
        for line in self.finish(LONG_PINGS, "crash"):
            log(f"A: {line}")
        rec = self.admin.call("admin.reconcile", {})
        assert rec["repaired"] == rec["revoked"] == rec["completed"] == rec["detached"] == 0, rec
        assert {n: eventfds(p) for n, p in pids.items()} == fds, "the QEMUs' eventfds changed across the restart"
        assert shared_eventfds(*pids.values()) == linked
        self.exchange(devs, tag="after")
        log(f"restarted from the fd store: the exchange in flight completed ({2 * LONG_PINGS} messages), "
            f"the QEMUs kept their eventfds {fds}, reconcile found nothing, a new exchange works")

    def granted_after_restart(self, devs1):
        # C's grant is never redeemed: it keeps the region live once B leaves it (phase 4).
        r = self.share(SIZES[1], peers=(self.c.name,))
        region = r["region"]
        self.c_token = r["tokens"][1]["token"]
        att = self.attach(r)
        devs = self.plugged(region, SIZES[1])
        assert self.guest_ids(att) == {n: i for n, (_, i) in devs.items()}, (att, devs)
        assert all(devs[n][0] != devs1[n][0] for n in devs), (devs, devs1)
        before = doorbell_interrupts(self.b, devs[self.b.name][0])
        self.exchange(devs, tag="second")
        assert doorbell_interrupts(self.b, devs[self.b.name][0]) > before, "B took no interrupt on the new region"
        self.exchange(devs1, tag="first-again")
        log(f"region {region} granted after the restart works ({devs}), and the first one beside it")
        return region, devs

    # ---- 4: B leaves the second region; A's device stays (C's grant keeps the region live)

    def peer_leaves(self, region, devs, devs1):
        a_qemu, b_qemu = self.a.qemu_pid(), self.b.qemu_pid()
        (dev_a, _), (dev_b, id_b) = devs[self.a.name], devs[self.b.name]
        dev_b1, id_b1 = devs1[self.b.name]
        assert shared_eventfds(a_qemu, b_qemu) == 2 * 2 * VECTORS  # both regions
        before = vector_interrupts(self.b, dev_b)
        assert self.a.check(f"CHANTOOL_DEVICE=/dev/{dev_a} chantool ring {id_b} 0") == "RANG"
        wait_for("A's ring to reach B", lambda: vector_interrupts(self.b, dev_b)[0] > before[0], 30)

        self.peer.call("region.release", {"domain": self.b.name, "region": region})
        alias = f"ua-brokerd-{region}"
        wait_for("the device to leave B", lambda: not self.b.has_alias(alias), 60)
        wait_for("B's driver to let go", lambda: not vector_interrupts(self.b, dev_b), 60)
        assert self.a.has_alias(alias)
        while True:  # the owner's agent is told B left the doorbells (brokerd's peer-gone)
            left = self.owner.wait_notification("region.left", timeout=30)["params"]
            if left["region"] == region:
                break
        assert left["domain"] == self.b.name, left
        # What linked the QEMUs through this region is gone: no eventfd of it is in both any more.
        wait_for("the region's eventfds to link A and B no more",
                 lambda: shared_eventfds(a_qemu, b_qemu) == 2 * VECTORS, 30)
        got = self.owner.call("region.get", {"region": region})
        assert got["state"] == "active" and got["owner_mapped"], got
        assert {p["domain"]: p["state"] for p in got["peers"]} == {self.b.name: "released", self.c.name: "granted"}, got
        log(f"B released region {region}: its device left B, A's stayed; region.left told A's agent; the "
            f"eventfds A's and B's QEMUs share are the first region's only")

        # A rings B's old id on vector 0; right after, A rings B on the first region's vector 1.
        # Once that one has arrived, the first (sent earlier) would have too: nothing did.
        b_total, b1 = self.b_interrupts(), vector_interrupts(self.b, dev_b1)
        assert self.a.check(f"CHANTOOL_DEVICE=/dev/{dev_a} chantool ring {id_b} 0") == "RANG"
        assert self.a.check(f"CHANTOOL_DEVICE=/dev/{devs1[self.a.name][0]} chantool ring {id_b1} 1") == "RANG"
        wait_for("the first region's ring", lambda: vector_interrupts(self.b, dev_b1)[1] > b1[1], 30)
        assert vector_interrupts(self.b, dev_b1)[0] == b1[0], "B's vector 0 was rung"
        assert self.b_interrupts() == b_total + 1, (self.b_interrupts(), b_total)
        log("A's ring to B's old id raised none of B's interrupts")

    def b_interrupts(self):
        return sum(doorbell_interrupts(self.b, n) for n in doorbell_devices(self.b))

    # ---- 4b: C redeems its grant: a TCG guest with a maximum of one vCPU, which brokerd warns of

    def one_vcpu_guest(self, region, devs):
        self.peer.call("region.attach", {"domain": self.c.name, "token": self.c_token})
        devs[self.c.name] = self.device(self.c, SIZES[1])
        text = self.d.read_log()
        assert f"{self.c.name} is a TCG guest with at most one vCPU" in text, "no warning for C's one vCPU"
        for g in (self.a, self.b):
            assert f"{g.name} is a TCG guest" not in text, f"a warning for {g.name}, which has a maximum of two"
        log(f"C (a maximum of one vCPU) attached region {region}: brokerd warned that its barriers are missing")

    # ---- 5: the admin revokes the first region for everyone, the owner the second

    def revoked(self, region, devs, guests, how):
        alias = f"ua-brokerd-{region}"
        how()
        self.wait_reclaimed(region)
        for g in guests:
            wait_for(f"the device to leave {g.name}", lambda: not g.has_alias(alias), 30)
            wait_for(f"{g.name}'s driver to let go", lambda: not vector_interrupts(g, devs[g.name][0]), 60)
        assert not os.path.exists(self.socket_path(region)), f"region {region}'s socket is still there"

    def revokes(self, region1, devs1, region2, devs2):
        self.revoked(region1, devs1, (self.a, self.b),
                     lambda: self.admin.call("admin.revoke", {"region": region1, "force": True}))
        log(f"the admin revoked region {region1}: the device left both guests, its socket was removed")
        # C holds it and nobody answers C's recall: brokerd takes it back at the deadline.
        self.revoked(region2, devs2, (self.a, self.c), lambda: self.owner.call(
            "region.revoke", {"owner": self.a.name, "region": region2, "deadline_ms": 1000}))
        log(f"the owner revoked region {region2}: C ignored the recall, the device left A and C at the deadline, "
            "its socket was removed")
        assert not self.admin.call("region.list", {})["regions"]
        self.d.store.settle()
        assert not self.d.store.names(), f"the fd store still holds {self.d.store.names()}"
        assert not os.listdir(self.ivshmem_dir), os.listdir(self.ivshmem_dir)
        assert not unix_sockets(self.d.proc.pid, self.ivshmem_dir), "brokerd still serves or holds a connection"
        assert shared_eventfds(self.a.qemu_pid(), self.b.qemu_pid()) == 0
        log("nothing left: no region, nothing in the fd store or the ivshmem directory, no server or connection "
            "in brokerd, no eventfd shared by A's and B's QEMUs")


def main():
    if os.geteuid() != 0 or os.environ.get("BROKERD_E2E") != "1":
        print("skipped: needs root and BROKERD_E2E=1 (boots three VMs through libvirt)")
        return 77
    import harness  # noqa: E402 (after the skip: it imports jsonschema)

    build_guest()
    log("guest built")
    daemons = started_daemons()
    prefix = domain_prefix("brokerd-db")
    rundir = tempfile.mkdtemp(prefix=prefix + "-")
    os.chmod(rundir, 0o755)  # libvirt-qemu reaches the FIFOs, the console file and the sockets
    ivshmem_dir = os.path.join(rundir, "ivshmem")
    pool = "db%d" % os.getpid()
    # A and B exchange messages: a maximum of two vCPUs each (tests/e2e/domain.xml) so that TCG emits
    # their barriers; C gets one, which brokerd warns of (phase 4b).
    guests = [Guest(f"{prefix}-{n}", rundir, max_vcpus=1 if n == "c" else None) for n in "abc"]
    a, b, c = guests
    d = None
    failed = True
    try:
        for g in guests:
            g.start()
        for g in guests:
            g.wait_ready()
        log("three guests at their command loop")
        policy = {
            "agents": [{"uid": 0, "domains": [a.name, b.name, c.name]}],
            "shares": [{"sharer": a.name, "device": "nic0", "peers": [b.name], "access": "rw"},
                       {"sharer": a.name, "device": "nic0", "peers": [b.name, c.name], "access": "rw",
                        "multi_peer": True}],
        }
        d = stored_daemon(policy, ["--backend", "libvirt", "--libvirt-uri", URI, "--unplug-grace", "1s",
                                   "--ivshmem-dir", ivshmem_dir])
        with open(d.platform_path, "w") as f:
            json.dump(shm_platform(pool, a.name), f)
        t = Doorbells(harness, a, b, c, d, ivshmem_dir)
        t.start()
        region1, devs1 = t.first_region()
        t.intruder_refused(region1)
        t.crash_during_exchange(region1, devs1)
        region2, devs2 = t.granted_after_restart(devs1)
        t.peer_leaves(region2, devs2, devs1)
        t.one_vcpu_guest(region2, devs2)
        t.revokes(region1, devs1, region2, devs2)
        failed = False
    finally:
        failed = tear_down(d, guests, pool, rundir, daemons, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
