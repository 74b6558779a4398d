#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""End to end through libvirt: two real guests share a region brokerd hands out.

Boots two transient TCG domains (machine pc, disk-less: tests/e2e/build-guest.sh), starts
brokerd with --backend libvirt, and drives everything through the RPC, with `virsh dumpxml`
as the independent witness of what is plugged where:

1. share: the owner's mapping is hot-plugged into guest A, the peer's into guest B; A writes a
   random pattern over the whole region, B verifies it and replies, A reads the reply; brokerd
   is killed (SIGKILL) and restarted with both mappings live; the owner revokes, B's agent
   releases on recall, the devices leave both guests (DEVICE_REMOVED) and the region is
   reclaimed with its backing file.
2. brokerd is killed with SIGKILL at every step of share, attach, revoke and reclaim (the
   crashpoints of brokerd/util/crashpoint.h); each restart must converge: the database and
   the live XML agree, files exist exactly for live regions, nothing is half-done.
3. libvirtd is restarted under brokerd with live mappings (when this test started libvirtd):
   a revoke made while it is away completes once brokerd has reconnected and reconciled.
4. an uncooperative (paused) peer ignores the unplug: the range stays quarantined past the
   deadline, the escalation (report) is audited, notified and shown by brokerctl; resumed,
   the guest lets go and the region is reclaimed.
5. a peer domain destroyed while attached: its attachment is revoked, the region reclaimed.
6. a paused owner ignores the unplug of its own mapping: escalation destroy ends it, which
   completes the removal and reclaims the region.

Needs root and BROKERD_E2E=1 (exit 77 otherwise). Starts virtlogd/libvirtd if no libvirtd
answers, and stops only what it started, by pid. BROKERD_E2E_GUEST: the guest cache dir.
"""
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

# The guests, virsh and libvirtd are shared with the other e2e tests and tests/crash/churn-libvirt.py
# (which reaches them through this module).
sys.path.insert(0, HERE)
from e2e_guests import (GUEST_DIR, SHM_DIR, URI, Guest, domain_prefix, libvirt_up, log, shm_platform,  # noqa: E402,F401
                        started_daemons, stop_proc, tear_down, virsh, wait_for)

REGION_SIZE = 1 << 20


def backing_file(pool, region):
    """The file libvirt maps for region of pool (ivshmem-plain memory lives in SHM_DIR)."""
    return os.path.join(SHM_DIR, f"brokerd-{pool}-{region}")


def backing_files(pool):
    """Region ids of pool's backing files in SHM_DIR."""
    prefix = f"brokerd-{pool}-"
    return {int(f[len(prefix):]) for f in os.listdir(SHM_DIR) if f.startswith(prefix)}


def divergence(regions, seen, pool, size_of):
    """What differs between brokerd's records and the real state; "" when they agree.

    regions: brokerd's region.list by region id; seen: for every guest (by name), the region
    ids of brokerd's devices in its live XML (Guest.regions()); pool: the shm pool whose
    backing files must exist exactly for the listed regions; size_of(region): the size each
    backing file must have. Also used by tests/crash/churn-libvirt.py with three guests."""
    problems = []
    for name, ids in seen.items():
        for rid in ids:
            r = regions.get(rid)
            holders = set()
            if r:
                if r["owner_mapped"]:
                    holders.add(r["owner"])
                holders |= {p["domain"] for p in r["peers"] if p["mapped"]}
            if name not in holders:
                problems.append(f"{name} has region {rid}, which brokerd does not record as mapped there")
    for rid, r in regions.items():
        live = r["state"] in ("offered", "active")
        # A revoke waiting for an attached peer's release (until its deadline) is a settled
        # state; a removal brokerd requested and has not seen confirmed is not.
        all_done = all(p["state"] in ("released", "revoked") for p in r["peers"])
        if any(p["mapped"] and p["state"] in ("released", "revoked") for p in r["peers"]) or \
                (r["state"] == "revoking" and all_done and r["owner_mapped"]):
            problems.append(f"region {rid} has a removal in progress")
        if (live or not all_done) and r["owner_mapped"] != (rid in seen.get(r["owner"], set())):
            problems.append(f"region {rid}: owner_mapped={r['owner_mapped']} but the live XML disagrees")
        for p in r["peers"]:
            if p["state"] == "attached" and not (p["mapped"] and rid in seen.get(p["domain"], set())):
                problems.append(f"region {rid}: {p['domain']} attached but not plugged")
    files = backing_files(pool)
    if files != set(regions):
        problems.append(f"backing files {sorted(files)} but live regions {sorted(regions)}")
    for rid in files:
        try:
            st = os.stat(backing_file(pool, rid))
        except FileNotFoundError:
            problems.append(f"backing file of {rid} went away while looking")  # a reclaim in flight
            continue
        if st.st_mode & 0o777 != 0o600 or st.st_size != size_of(rid):
            problems.append(f"backing file of {rid}: mode {oct(st.st_mode)} size {st.st_size}")
    return "; ".join(problems)


class E2E:
    """The two guests, brokerd and its agents, and the checks that tie them together."""

    ATTACH_POINTS = ["share-recorded", "share-created", "share-mapped", "attach-recorded", "attach-mapped"]
    REVOKE_POINTS = ["revoke-recorded", "release-recorded", "unmap-requested", "unmap-confirmed",
                     "reclaim-scrubbed", "reclaim-destroyed", "reclaimed", "revoke-forced"]

    def __init__(self, harness, a, b, d, pool):
        self.h, self.a, self.b, self.d, self.pool = harness, a, b, d, pool
        self.owner = self.peer = self.admin = None

    def connect(self):
        self.owner, self.peer, self.admin = self.d.agent(), self.d.agent(), self.d.admin()
        self.owner.call("events.subscribe", {"domains": [self.a.name]})
        self.peer.call("events.subscribe", {"domains": [self.b.name]})
        self.admin.call("events.subscribe", {})

    def start(self, env=None):
        self.d.start(env)
        self.connect()

    def share(self, peer_domain=None):
        return self.owner.call("region.share", {
            "owner": self.a.name, "device": "nic0", "size": REGION_SIZE,
            "peers": [{"domain": peer_domain or self.b.name, "access": "rw"}]})

    def attach(self, r):
        return self.peer.call("region.attach", {"domain": self.b.name, "token": r["tokens"][0]["token"]})

    def wait_reclaimed(self, region, timeout=60):
        """Waits for region's reclaim notification to the owner (earlier ones are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.owner.wait_notification("region.reclaimed", timeout=max(0.1, deadline - time.monotonic()))
            if n["params"]["region"] == region:
                return n

    def backing(self, region):
        return backing_file(self.pool, region)

    def files(self):
        return backing_files(self.pool)

    def live(self):
        return {r["region"]: r for r in self.admin.call("region.list", {})["regions"]}

    def divergence(self):
        """What differs between brokerd's records and the real state; "" when they agree."""
        regions = self.live()
        seen = {self.a.name: self.a.regions(), self.b.name: self.b.regions()}
        return divergence(regions, seen, self.pool, lambda rid: REGION_SIZE)

    def wait_converged(self, what, timeout=30):
        last = [""]

        def ok():
            last[0] = self.divergence()
            return not last[0]
        try:
            wait_for(what, ok, timeout)
        except AssertionError:
            raise AssertionError(f"{what}: not converged: {last[0]}")

    def take_all_down(self):
        for rid in self.live():
            self.admin.call("admin.revoke", {"region": rid, "force": True})
        wait_for("every region reclaimed", lambda: not self.live(), 30)
        wait_for("no devices left", lambda: not self.a.regions() and not self.b.regions(), 30)
        assert not self.files(), self.files()

    # ---- 1: data through a shared region, a crash with live mappings, a clean revoke ----

    def data_roundtrip(self):
        a, b, owner = self.a, self.b, self.owner
        try:
            owner.call("region.share", {"owner": a.name, "device": "nic0", "size": 3 << 20,
                                        "peers": [{"domain": b.name, "access": "rw"}]})
            raise AssertionError("a 3MiB share was accepted")
        except self.h.RpcError as e:
            assert e.name == "size_unsupported", e
            assert "power-of-two" in e.error["message"], e.error
        log("3MiB share refused: size_unsupported")

        r = self.share()
        assert r["placement"] == "region" and r["size"] == REGION_SIZE, r
        assert "fd" not in r, r
        region = r["region"]
        alias = f"ua-brokerd-{region}"
        st = os.stat(self.backing(region))
        assert st.st_size == REGION_SIZE and st.st_mode & 0o777 == 0o600, oct(st.st_mode)
        assert a.has_alias(alias) and not b.has_alias(alias)
        log(f"region {region} shared; {alias} plugged into A; backing file mode 0600")

        att = self.attach(r)
        assert att["region"] == region and att["access"] == "rw" and "fd" not in att, att
        assert b.has_alias(alias)
        log(f"attached: {alias} plugged into B")

        for g in (a, b):
            rc, out = g.run("for i in $(seq 100); do shmtool find && exit 0; sleep 0.1; done; exit 1")
            assert rc == 0, f"{g.name} sees no ivshmem device: {out}"
        seed = "0x" + secrets.token_hex(8)
        rc, out = a.run(f"shmtool fill {seed}")
        assert rc == 0 and out == f"FILL OK {REGION_SIZE}", out
        rc, out = b.run(f"shmtool verify {seed}")
        assert rc == 0 and out == f"VERIFY OK {REGION_SIZE}", out
        reply = "reply-from-b-" + secrets.token_hex(4)
        rc, out = b.run(f"shmtool put 4096 {reply}")
        assert rc == 0, out
        rc, out = a.run("shmtool get 4096")
        assert rc == 0 and out == reply, out
        log(f"A wrote {REGION_SIZE} bytes, B verified them, A read B's reply")

        # A crash with both mappings live: the restarted daemon finds the region again
        # (restore() checks the file, reconcile() the live XML), and the guests keep their memory.
        assert self.d.stop(signal.SIGKILL) == -signal.SIGKILL
        self.start()
        got = self.owner.call("region.get", {"region": region})
        assert got["state"] == "active" and got["peers"][0]["state"] == "attached", got
        assert got["owner_mapped"] and got["peers"][0]["mapped"], got
        assert a.has_alias(alias) and b.has_alias(alias)
        rc, out = b.run(f"shmtool verify {seed}")
        assert rc == 1 and "VERIFY BAD" in out, out  # B's reply is in there now
        rc, out = a.run("shmtool get 4096")
        assert rc == 0 and out == reply, out
        rec = self.admin.call("admin.reconcile", {})
        assert rec == {"backend": "libvirt", "checked": 2, "repaired": 0, "revoked": 0, "completed": 0,
                       "detached": 0}, rec
        log("brokerd killed (SIGKILL) and restarted: region restored, both mappings intact, reconcile agrees")

        self.owner.call("region.revoke", {"owner": a.name, "region": region, "deadline_ms": 60000})
        recall = self.peer.wait_notification("region.recall", timeout=30)
        assert recall["params"]["region"] == region, recall
        self.peer.call("region.release", {"domain": b.name, "region": region})
        log("revoked; B's agent released on recall")
        self.wait_reclaimed(region)
        log("region reclaimed (after DEVICE_REMOVED from both guests)")
        try:
            self.owner.call("region.get", {"region": region})
            raise AssertionError(f"region {region} still live after reclaim")
        except self.h.RpcError as e:
            assert e.name == "no_such_region", e
        text = self.d.read_log()
        for g in (a, b):
            assert f"removal of {alias} from {g.name} requested" in text, text
            assert f"libvirt: {alias} removed from {g.name}" in text, text
        assert not a.has_alias(alias) and not b.has_alias(alias)
        assert not os.path.exists(self.backing(region))
        for g in (a, b):
            rc, out = g.run("shmtool find")
            assert rc == 1, f"{g.name} still sees the device: {out}"
        log("alias gone from both live definitions and guests; backing file gone")

    # ---- 2: SIGKILL at every step ----

    def crash_at(self, point):
        self.d.stop()
        self.start(env={"BROKERD_CRASHPOINT": point})
        try:
            r = self.share()
            self.attach(r)
            if point in self.REVOKE_POINTS:
                force = point == "revoke-forced"
                self.owner.call("region.revoke", {"owner": self.a.name, "region": r["region"], "force": force,
                                                  "deadline_ms": 60000})
                if not force:
                    self.peer.call("region.release", {"domain": self.b.name, "region": r["region"]})
        except (self.h.RpcError, OSError, EOFError, AssertionError):
            pass  # the daemon died mid-call; what it acknowledged is checked below
        proc = self.d.proc
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"brokerd never reached crashpoint {point}")
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode)
        self.d.stop()
        self.start()
        self.wait_converged(f"restart after a crash at {point}")
        self.take_all_down()

    def crashes(self):
        for point in self.ATTACH_POINTS + self.REVOKE_POINTS:
            t = time.monotonic()
            self.crash_at(point)
            log(f"SIGKILL at {point}: restart converged, then torn down cleanly ({time.monotonic() - t:.1f}s)")

    # ---- 3: libvirtd restarts under brokerd ----

    def libvirtd_restart(self, daemons):
        r = self.share()
        self.attach(r)
        region = r["region"]
        stop_proc(daemons["libvirtd"])
        wait_for("brokerd to notice libvirtd left", lambda: "lost the connection to libvirtd" in self.d.read_log(), 20)
        self.owner.call("region.revoke", {"owner": self.a.name, "region": region, "deadline_ms": 60000})
        self.peer.wait_notification("region.recall", timeout=10)
        self.peer.call("region.release", {"domain": self.b.name, "region": region})
        got = self.owner.call("region.get", {"region": region})
        # Nobody can confirm a removal now: both mappings are still recorded, the range quarantined.
        assert got["state"] == "revoking" and got["owner_mapped"] and got["peers"][0]["mapped"], got
        assert os.path.exists(self.backing(region))
        log("libvirtd stopped with the region mapped; revoke recorded, range quarantined")
        daemons["libvirtd"] = subprocess.Popen(["libvirtd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("libvirtd back", libvirt_up, 30)
        self.wait_reclaimed(region)
        assert "libvirt: connected to" in self.d.read_log()
        assert region not in self.a.regions() and region not in self.b.regions()
        assert not os.path.exists(self.backing(region))
        self.wait_converged("after libvirtd came back")
        log("libvirtd back: brokerd reconnected, reconciled, and the revoke completed")

    # ---- 4: a peer that ignores the unplug ----

    def paused_peer(self):
        r = self.share()
        self.attach(r)
        region = r["region"]
        virsh("suspend", self.b.name)
        self.admin.notifications.clear()
        self.owner.call("region.revoke", {"owner": self.a.name, "region": region, "deadline_ms": 500})
        self.peer.wait_notification("region.recall", timeout=10)
        # B's agent does not release and B cannot run: the deadline forces the revoke, the
        # unplug stays pending, and after the grace the escalation runs.
        over = self.admin.wait_notification("region.unplug_overdue", timeout=30)["params"]
        assert over["region"] == region and over["domain"] == self.b.name and over["escalation"] == "report", over
        got = self.admin.call("region.get", {"region": region})
        p = got["peers"][0]
        assert got["state"] == "revoking" and p["state"] == "revoked" and p["mapped"], got
        assert p["unplug"]["escalation"] == "report" and not p["unplug"]["escalation_failed"], p
        assert region in self.b.regions() and os.path.exists(self.backing(region))
        listing = self.d.brokerctl("list").stdout
        assert f"{self.b.name}:rw:revoked+overdue(report)" in listing, listing
        audit = self.admin.call("admin.audit", {"limit": 1000})["entries"]
        assert any(e["action"] == "escalate-report" and e["region"] == region for e in audit), audit
        time.sleep(1)
        assert region in self.b.regions() and os.path.exists(self.backing(region)), "quarantine did not hold"
        log("paused peer ignored the unplug: range quarantined past the deadline, escalation reported, "
            "brokerctl shows +overdue(report)")
        virsh("resume", self.b.name)
        self.wait_reclaimed(region)
        assert region not in self.b.regions() and not os.path.exists(self.backing(region))
        log("resumed: the guest let go, the region was reclaimed")

    # ---- 5: a peer destroyed while attached ----

    def peer_destroyed(self):
        r = self.share()
        region = r["region"]
        self.attach(r)
        assert region in self.a.regions() and region in self.b.regions()
        self.b.stop()
        self.wait_reclaimed(region)
        assert f"libvirt domain {self.b.name} stopped" in self.d.read_log()
        assert region not in self.a.regions()
        assert not os.path.exists(self.backing(region))
        log(f"B destroyed while attached: region {region} revoked and reclaimed, A's device gone")

    # ---- 6: an owner that ignores the unplug, escalation destroy ----

    def paused_owner_destroyed(self):
        self.d.stop()
        self.d.extra_args += ["--unplug-escalation", "destroy"]
        self.start()
        r = self.share()  # B is gone: its grant just waits
        region = r["region"]
        virsh("suspend", self.a.name)
        self.owner.call("region.revoke", {"owner": self.a.name, "region": region, "deadline_ms": 500})
        over = self.admin.wait_notification("region.unplug_overdue", timeout=30)["params"]
        assert over["domain"] == self.a.name and over["escalation"] == "destroy", over
        self.wait_reclaimed(region)
        wait_for("A destroyed", lambda: not self.a.running(), 30)
        assert not os.path.exists(self.backing(region))
        audit = self.admin.call("admin.audit", {"limit": 1000})["entries"]
        assert any(e["action"] == "escalate-destroy" and e["domain"] == self.a.name for e in audit), audit
        log("paused owner ignored the unplug: escalation destroyed it, the region was reclaimed")


def main():
    if os.geteuid() != 0 or os.environ.get("BROKERD_E2E") != "1":
        print("skipped: needs root and BROKERD_E2E=1 (boots two VMs through libvirt)")
        return 77
    import harness  # noqa: E402 (after the skip: it imports jsonschema)

    subprocess.run([os.path.join(HERE, "build-guest.sh"), GUEST_DIR], check=True, timeout=900)
    log("guest built")
    daemons = started_daemons()
    rundir = tempfile.mkdtemp(prefix="brokerd-e2e-")
    os.chmod(rundir, 0o755)  # libvirt-qemu reaches the FIFOs and the console file
    prefix = domain_prefix("brokerd-e2e")
    pool = f"e2e{os.getpid()}"
    a, b = Guest(prefix + "-a", rundir), Guest(prefix + "-b", rundir)
    d = None
    failed = True
    try:
        a.start()
        b.start()
        log("both domains created")
        a.wait_ready()
        b.wait_ready()
        log("both guests at their command loop")

        policy = {
            "agents": [{"uid": 0, "domains": [a.name, b.name]}],
            "shares": [{"sharer": a.name, "device": "nic0", "peers": [b.name], "access": "rw"}],
        }
        d = harness.Daemon(policy=policy, extra_args=["--backend", "libvirt", "--libvirt-uri", URI,
                                                      "--unplug-grace", "1s"])
        with open(d.platform_path, "w") as f:
            json.dump(shm_platform(pool, a.name), f)
        t = E2E(harness, a, b, d, pool)
        t.start()
        assert t.owner.call("broker.info")["backend"] == "libvirt"

        t.data_roundtrip()
        t.crashes()
        if "libvirtd" in daemons:
            t.libvirtd_restart(daemons)
        else:
            log("libvirtd was already running (not ours to restart): skipping the libvirtd restart phase")
        t.paused_peer()
        t.peer_destroyed()
        t.paused_owner_destroyed()
        failed = False
    finally:
        failed = tear_down(d, (a, b), pool, rundir, daemons, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
