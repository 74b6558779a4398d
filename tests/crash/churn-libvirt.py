#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Crash-consistency churn against the libvirt backend: brokerd hot-plugs ivshmem devices into
three real TCG guests while it is SIGKILLed again and again under a random mix of share,
attach, release, revoke, policy reload and reads from several agent connections; every restart
must converge with the guests' live XML.

    BROKERD_E2E=1 churn-libvirt.py --kills 520 --progress 20 [--seed S]   # the long form
    BROKERD_E2E=1 churn-libvirt.py --ci                                   # the short form (suite e2e)

The model is tests/crash/churn.py (the memfd backend); its database view, audit replay,
acknowledgement oracle, op log and RPC client are imported from there, and the guests, virsh,
libvirtd and the convergence check (divergence()) from tests/e2e/test_libvirt_e2e.py.

Set-up: three transient domains (machine pc, 256 MiB, disk-less: tests/e2e/build-guest.sh): A
owns nic0 (the HW domain) and shares it with B and C (rw, one rule each and a multi_peer rule to
both). One shm pool in /dev/shm (pool clv<pid>); region sizes are powers of two from 4KiB to
1MiB; A's quota is 8 regions (machine pc has a limited number of PCI hotplug slots). --doorbells
(0.4) of the shares are doorbell regions (1, 2 or 4 vectors: ivshmem-doorbell devices served by
brokerd on <daemon dir>/ivshmem/region-<id>.sock). brokerd runs with --backend libvirt
--unplug-grace 1s --revoke-timeout 1s --ivshmem-dir (tests/integration/harness.py's Daemon: temp
sockets, temp database) under systemd's fd store (tests/integration/fdstore.py plays it), as
systemd runs it, so that the doorbells' connections survive the kills. virtlogd and libvirtd are started in the foreground if no
libvirtd answers, and stopped by pid at the end.

Each kill is one of
  * a crashpoint: the daemon starts with BROKERD_CRASHPOINT=<name>:<N> (brokerd/util/crashpoint.h)
    and kills itself at the N-th passage; every name in the source (unmap-requested and
    unmap-confirmed included: only this backend reaches them) in a shuffled cycle; if it does
    not fire within --cp-timeout the daemon is SIGKILLed anyway;
  * a random SIGKILL while the agents run (random delay), or 0-300 ms after exec, during
    startup, reconciliation and recovery.
With libvirt, unmap-recorded is reached only by an unmap that completes at once (the domain is
gone), so the epochs of that crashpoint, and --domain-stops of the others, destroy a guest under
brokerd during the churn; it stays down through the restart and boots again once it converged.

While the daemon is down, a copy of its database (db + wal) gets PRAGMA integrity_check and
foreign_key_check, the audit trail is replayed, and the record is checked against every
acknowledgement (share: same base, size, peers, tokens; attach: the peer never granted again;
release: released; revoke, recall, reclaimed: as told). And the record never claims less than
the guests hold: every brokerd device in a live XML, and every backing file, belongs to a
region the database has and has not reclaimed, and a device only where the mapping is recorded.

After each restart the agents stay idle until the state converges (bounded by
--converge-timeout): the database and region.list agree; brokerd's devices in every guest's live
XML (alias ua-brokerd-<id>, name brokerd-<pool>-<id>, the region's size) are exactly the
mappings brokerd records (divergence()); attached peers are plugged; no removal is left pending;
no reclaimed region is plugged anywhere or has a backing file; backing files exist exactly for
regions not reclaimed (mode 0600, the QEMU user's, the region's size, the signature the driver
wrote at offset 0 still there); the daemon holds no fd on a reclaimed or deleted region file;
routes, quota usage and pool usage are as the database says; fds the driver holds on reclaimed
regions' files read zeros; reconciliation never met a device brokerd did not know
(detach-unknown in the audit trail). Doorbell regions are reconciled like plain ones: their
devices are ivshmem-doorbell with the region's socket and vectors (plain regions' ivshmem-plain);
a socket file, a listening server in brokerd and fds in the fd store exist exactly for the doorbell
regions brokerd lists, and no socket, server, connection or stored fd for a region that is gone.
What does not converge in time is a finding; a removal
awaiting DEVICE_REMOVED, a revoke awaiting its deadline or a deferred removal (2 s) is waited out.

At the end: --final-seconds of churn without kills, a forced admin.revoke of everything, every
device gone from every guest, no backing file, no region fd, no doorbell socket, connection,
pidfd or eventfd (but the ivshmem host thread's), an empty ivshmem directory and fd store,
SIGTERM exiting 0.

If libvirtd (or virtlogd) dies during the run it is a finding (with the daemon's log tail); it is
restarted and, with --keep-going, the run goes on.

Every failure prints the seed, the op log tail and the daemon's log tail; the temp directory
(ops.log, brokerd.log, libvirtd.log, the database) is kept. The seed fixes the kill schedule and
the agents' choices; thread interleaving, hot-plug timing and kill timing are not reproducible.

Exit status: 0 clean, 1 findings, 77 when not root or BROKERD_E2E is not 1 (skip).
"""
import argparse
import collections
import importlib.util
import json
import os
import pwd
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


# The guests, virsh, libvirtd and divergence(): standard library only, so loaded at once.
e2e = load_module("test_libvirt_e2e", os.path.join(HERE, "..", "e2e", "test_libvirt_e2e.py"))
import e2e_guests  # noqa: E402 (on the path once test_libvirt_e2e is loaded)
# churn.py's database view, oracle, agent and RPC client (with the harness, as churn.py uses it).
churn = load_module("churn", os.path.join(HERE, "churn.py"))
harness = churn.harness

KiB, MiB = 1024, 1024 * 1024
LIVE, FINAL_PEER = churn.LIVE, churn.FINAL_PEER
DEADLINES_MS = [0, 0, 50, 200, 800, 2000]
SIZES = [4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB]
SIG_MAGIC = b"CHLV"
BELL_VECTORS = [1, 2, 4]  # a doorbell region's vectors (region.share's doorbells)
# brokerd's ivshmem host thread (brokerd/backend/ivshmem-host.h), made with the first doorbell region
# and kept: its two eventfds and its loop's fds.
IVSHMEM_HOST_EVENTFDS, IVSHMEM_HOST_FDS = 2, 4
EVENTFD = "anon_inode:[eventfd]"
DEVICE = "nic0"
STUCK_SLACK_USEC = 20 * 1000000  # a revoke this far past its deadline is stuck (busy machines: generous)
SHMEM_RE = re.compile(r"<shmem\b([^>]*)>(.*?)</shmem>", re.S)
UNITS = {"b": 1, "bytes": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": 1024 * MiB, "gib": 1024 * MiB}


Device = collections.namedtuple("Device", "name size model server vectors")


def guest_devices(name):
    """brokerd's shmem devices in a domain's live XML: {region: Device(shmem name, size in bytes or
    None, model, server socket path or None, msi vectors or None)}; None when the domain is not there."""
    p = e2e.virsh("dumpxml", name, check=False)
    if p.returncode != 0:
        return None
    out = {}
    for m in SHMEM_RE.finditer(p.stdout):
        attrs, body = m.groups()
        a = re.search(r"<alias name='ua-brokerd-([1-9][0-9]*)'/>", body)
        if not a:
            continue
        n = re.search(r"\bname='([^']*)'", attrs)
        s = re.search(r"<size unit='(\w+)'>(\d+)</size>", body)
        size = int(s.group(2)) * UNITS.get(s.group(1).lower(), 0) if s else None
        model = re.search(r"<model type='([^']*)'/>", body)
        server = re.search(r"<server path='([^']*)'/>", body)
        msi = re.search(r"<msi vectors='(\d+)'", body)
        out[int(a.group(1))] = Device(n.group(1) if n else None, size, model.group(1) if model else None,
                                      server.group(1) if server else None, int(msi.group(1)) if msi else None)
    return out


class Guest(e2e.Guest):
    """The e2e guest, which can also be thrown away (its FIFOs and XML removed) to boot again."""

    def discard(self):
        self.stop()
        for suffix in (".in", ".out", ".xml"):
            try:
                os.unlink(self.fifo + suffix)
            except FileNotFoundError:
                pass


class Topology:
    """Names of the guests, the pool, the platform and the policies."""

    def __init__(self):
        pid = os.getpid()
        prefix = e2e_guests.domain_prefix("brokerd-clv")
        self.a, self.b, self.c = prefix + "-a", prefix + "-b", prefix + "-c"
        self.peers = (self.b, self.c)
        self.pool = "clv%d" % pid
        self.ivshmem_dir = None  # set with the daemon's files (make_brokerd)
        self.platform = e2e_guests.shm_platform(self.pool, self.a)
        p0 = {
            "agents": [{"uid": 0, "domains": [self.a, self.b, self.c]}],
            "shares": [{"sharer": self.a, "device": DEVICE, "peers": [self.b], "access": "rw"},
                       {"sharer": self.a, "device": DEVICE, "peers": [self.c], "access": "rw"},
                       {"sharer": self.a, "device": DEVICE, "peers": [self.b, self.c], "access": "rw",
                        "multi_peer": True}],
            "quotas": [{"domain": self.a, "max_bytes": "8MiB", "max_regions": 8}],
        }
        # The stricter policy: C is no longer a peer; a smaller quota.
        p1 = json.loads(json.dumps(p0))
        p1["shares"] = [s for s in p1["shares"] if self.c not in s["peers"]]
        p1["quotas"] = [{"domain": self.a, "max_bytes": "4MiB", "max_regions": 5}]
        bad = '{"agents": [], "shares": [{"sharer": "%s"}]}' % self.a
        self.policies = {"p0": json.dumps(p0), "p1": json.dumps(p1), "bad": bad}

    def path(self, rid):
        return e2e.backing_file(self.pool, rid)


# ---------------------------------------------------------------------------------------------
# the agents' shared world


class World(churn.World):
    """churn.py's world (rebuild() included: it also keeps pool, device and access there, which
    nothing here reads) with one pool and no route locks."""

    def __init__(self):
        self.lock = threading.RLock()
        self.owned = {}        # region -> dict(size, revoked)
        self.grants = {}       # (region, domain) -> dict(token, size)
        self.attachments = {}  # (region, domain) -> dict(size)
        self.sigs = {}         # region -> the signature written at offset 0 of its backing file
        self.held = {}         # region -> (fd, size): the driver's fd on the backing file
        self.bells = {}        # region -> vectors, for the doorbell regions acknowledged
        self.bases = collections.deque(maxlen=32)
        self.policy_lock = threading.Lock()
        self.good_policy = "p0"
        self.in_doubt = []     # (kind, detail) of requests cut off by a kill
        self.backend_failures = []  # backend_failed answers, judged once libvirtd's health is known

    def note_base(self, r):
        self.bases.append((r["base"], r["size"]))

    def let_go(self, rid):
        """Nothing: the holders here are guests, which libvirt unplugs; held keeps the driver's
        own fd on the backing file (for the signature checks), not a holder's."""


# ---------------------------------------------------------------------------------------------
# the daemon


def make_brokerd(topo):
    """churn.py's Brokerd (spawn, wait_ready, kill by pid, fds, log tail) on a harness Daemon
    set up for the libvirt backend and this run's platform and policy."""

    class Brokerd(churn.Brokerd):
        def __init__(self):
            # Under the fd store, as systemd runs it: the doorbells' connections survive the kills.
            super().__init__(with_store=True, daemon=harness.Daemon(policy=topo.policies["p0"], extra_args=[
                "--backend", "libvirt", "--libvirt-uri", e2e.URI, "--unplug-grace", "1s",
                "--revoke-timeout", "1s", "--max-connections-per-uid", "64"]))
            topo.ivshmem_dir = os.path.join(self.d.dir, "ivshmem")
            self.d.extra_args += ["--ivshmem-dir", topo.ivshmem_dir]
            with open(self.d.platform_path, "w") as f:
                json.dump(topo.platform, f)

    return Brokerd()


# ---------------------------------------------------------------------------------------------
# agents


class Agent(churn.Agent):
    """churn.py's agent (connection, calls, in-doubt requests, notifications) with the ops of
    this topology."""
    WEIGHTS = [("share", 26), ("attach", 26), ("release", 17), ("revoke", 19), ("reload", 2), ("read", 10)]
    ADMIN_REVOKE_SHARE = 0.3
    RELOAD_WEIGHTS = [50, 30, 20]
    SIGHUP_OUTCOME = "signalled"

    def __init__(self, run, idx, epoch, subscribe):
        super().__init__(run, idx, epoch, subscribe)
        self.topo = run.topo

    def ordered(self, keys):
        return sorted(keys)

    def domain_label(self, domain):
        return domain[-1]

    def unexpected(self, err, domain, why):
        if err == "backend_failed":
            self.backend_failed(domain, why)
        else:
            super().unexpected(err, domain, why)

    def backend_failed(self, domain, what):
        """backend_failed is plausible only while libvirtd is away or the domain to map into was
        stopped: judged at the epoch's end."""
        with self.world.lock:
            self.world.backend_failures.append((domain, what))

    def plugged_sample(self, rid, domain, what):
        """Now and then, the live XML right after a reply: the device must be there, unless the
        region was revoked meanwhile (checked at the next snapshot)."""
        if self.rng.random() >= self.run_.args.xml_sample:
            return
        devs = guest_devices(domain)
        if devs is None:
            return  # the domain was stopped meanwhile (see --domain-stops)
        self.run_.count("xml-sample")
        if rid not in devs and not self.removed_unrequested(rid, domain):
            self.posthoc("not_live", rid, None, "%s: region %d is not in %s's live XML right after the reply"
                         % (what, rid, domain))

    def removed_unrequested(self, rid, domain, wait=3.0):
        """Whether brokerd saw the guest drop the device on its own (QEMU/ACPI under TCG was seen
        to eject a device next to the one whose removal was asked) and mapped it again: then
        its absence is the guest's doing, and the repair is checked like any other."""
        line = "the mapping of region %d into %s went away unrequested" % (rid, domain)
        deadline = time.monotonic() + wait
        while True:
            try:
                with open(self.run_.daemon.d.log, errors="replace") as f:
                    if line in f.read():
                        self.run_.count("xml-sample:removed-unrequested")
                        return True
            except OSError:
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    # -- ops

    def op_share(self, fallback=True):
        rng, w, t = self.rng, self.world, self.topo
        with w.lock:
            full = sum(1 for o in w.owned.values() if not o["revoked"]) >= 8
        if full and fallback and rng.random() < 0.6:
            return self.op_revoke(fallback=False)  # at the quota: fewer refused shares, more hot-plug
        peers = rng.choices([[t.b], [t.c], [t.b, t.c]], [40, 30, 30])[0]
        size = rng.choice(SIZES)
        bells = rng.choice(BELL_VECTORS) if rng.random() < self.run_.args.doorbells else 0
        self.seq += 1
        label = "chlv:%d:%d:%d" % (self.epoch, self.idx, self.seq)
        params = {"owner": t.a, "device": DEVICE, "size": size,
                  "peers": [{"domain": d, "access": "rw"} for d in peers], "label": label}
        if bells:
            params["doorbells"] = bells
        place = None
        if rng.random() < 0.1:
            with w.lock:
                cands = list(w.bases)
            if cands:
                place = rng.choice(cands)
                params["base"] = hex(place[0])
                params["size"] = size = place[1]
        self.doubt("share", label)
        res, err = self.call(self.conn, "region.share", params)
        self.inflight = None
        short = "share %s %d peers=%s%s%s" % (label, size, ",".join(p[-1] for p in peers),
                                              " base=%s" % params["base"] if place else "",
                                              " doorbells=%d" % bells if bells else "")
        if err:
            self.log("%s -> %s" % (short, err))
            self.run_.count("share:" + err)
            expected = {"quota_exceeded"}
            if place:
                expected.add("overlaps_region")
            if t.c in peers:
                expected.add("forbidden")  # policy p1
            if err == "backend_failed":
                self.backend_failed(t.a, "share %s answered backend_failed" % params)
            elif err not in expected:
                self.bad("unexpected", "share %s answered %s" % (params, err))
            return
        if res["placement"] != "region":
            self.log("%s -> %s" % (short, res))
            self.run_.count("share:bounce")
            self.bad("unexpected", "share %s answered %s (the pool is far larger than the quota)" % (params, res))
            return
        rid, base = res["region"], int(res["base"], 16)
        self.conn.drop_fds()
        tokens = {x["domain"]: x["token"] for x in res["tokens"]}
        with self.oracle.lock:
            self.oracle.shares[rid] = dict(base=base, size=res["size"], pool=res["pool"], device=DEVICE, label=label,
                                           peers={d: ("rw", tokens.get(d)) for d in peers})
        self.log("%s -> region %d %#x+%d" % (short, rid, base, res["size"]))
        self.run_.count("share:ok")
        if res["pool"] != t.pool or res["size"] != size or set(tokens) != set(peers) or "fd" in res or \
                res.get("vectors", 0) != bells:
            self.bad("reply", "share %s: reply %s" % (params, res))
        if place and base != place[0]:
            self.bad("reply", "share in place mode at %#x placed at %#x" % (place[0], base))
        # The backing file: fresh memory is zero-filled (scrubbed); the driver signs it, as
        # the owner would.
        try:
            fd = os.open(t.path(rid), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            self.posthoc("not_live", rid, None, "region %d's backing file was gone right after its share" % rid)
            return
        for off in sorted({0, max(0, res["size"] - 4096)}):
            if os.pread(fd, 4096, off) != bytes(4096):
                self.bad("scrub", "region %d: new memory is not zeroed at offset %d" % (rid, off))
        sig = SIG_MAGIC + struct.pack("<QI", rid, self.rng.getrandbits(32))
        os.pwrite(fd, sig, 0)
        # Sampled before the other agents can see the region: only a revoke could remove it.
        self.plugged_sample(rid, t.a, "share")
        with w.lock:
            w.sigs[rid] = sig
            w.held[rid] = (fd, res["size"])
            w.owned[rid] = dict(size=res["size"], revoked=False)
            if bells:
                w.bells[rid] = bells
            w.bases.append((base, res["size"]))
            for d in peers:
                w.grants[(rid, d)] = dict(token=tokens[d], size=res["size"])

    def attached(self, key, g, res):
        w = self.world
        rid, d = key
        self.conn.drop_fds()
        with self.oracle.lock:
            self.oracle.attached.add((rid, d))
        self.log("attach region %d %s -> ok" % (rid, d[-1]))
        self.run_.count("attach:ok")
        if res["region"] != rid or res["access"] != "rw" or res["size"] != g["size"] or "fd" in res:
            self.bad("reply", "attach of region %d by %s: reply %s, share said %s" % (rid, d, res, g))
        sig = w.sigs.get(rid)
        if sig:
            try:
                with open(self.topo.path(rid), "rb") as f:
                    got = f.read(len(sig))
            except FileNotFoundError:
                got = None
            if got is None or got == bytes(len(sig)):
                # Only a reclaim scrubs and unlinks: a revoke from another agent ran meanwhile.
                self.posthoc("not_live", rid, None, "%s attached region %d and its file %s" % (
                    d, rid, "was gone" if got is None else "read zeros, not the owner's signature"))
            elif got != sig:
                self.bad("backend", "%s attached region %d, whose file reads %r, not the owner's %r"
                         % (d, rid, got, sig))
        # Sampled before the other agents can release it: only a revoke could remove it.
        self.plugged_sample(rid, d, "attach by %s" % d)
        with w.lock:
            w.attachments[key] = dict(size=g["size"])

    def released(self, rid, res):
        if res["state"] == "reclaimed":
            with self.world.lock:
                self.world.owned.pop(rid, None)

    def revoke_candidates(self):
        w = self.world
        with self.oracle.lock:
            gone = set(self.oracle.reclaimed)
        for rid in gone & set(w.owned):
            del w.owned[rid]
        return sorted(super().revoke_candidates())

    def nothing_to_revoke(self, fallback):
        return self.op_share(fallback=False) if fallback else None

    def lookup_target(self):
        return DEVICE, self.rng.choice(self.topo.peers)


# ---------------------------------------------------------------------------------------------
# the run


class Run(churn.Run):
    NAME = "churn-libvirt"
    CHECK_PHASE = "converge"
    CONVERGE_PHASE = "converge"
    STUCK_SLACK_USEC = STUCK_SLACK_USEC
    AGENT = Agent
    REGION_FDS = "region files"
    STARTUP_SHARE, STARTUP_MAX_DELAY, RANDOM_MIN_DELAY = 0.2, 0.3, 0.05

    def __init__(self, args):
        self.topo = Topology()
        super().__init__(args)
        self.owner_domain, self.peer_domains = self.topo.a, self.topo.peers
        self.world = World()
        self.converge_times = []
        self.guests = []
        self.daemons = {}
        self.libvirt_outages = 0
        self.outage_epoch = -1
        self.stale_log_pos = 0
        self.stopped = None  # the guest stopped by the last epoch (--domain-stops), until it is back
        self.baseline_eventfds = 0  # brokerd's eventfds at its first start (libvirt's own among them)
        self.rundir = None
        self.qemu_uid = pwd.getpwnam("libvirt-qemu").pw_uid
        # unmap-requested and unmap-confirmed included: only this backend reaches them.
        self.points = list(churn.CRASHPOINTS) + self.unknown_points

    # -- reporting

    def repro(self):
        a = self.args
        return ("BROKERD_E2E=1 %s %s --brokerd %s --seed %d --kills %d --agents %d --max-delay %s --cp-timeout %s "
                "--max-n %d --final-seconds %s" % (sys.executable, os.path.abspath(__file__), harness.BROKERD,
                                                   self.seed, a.kills, a.agents, a.max_delay, a.cp_timeout, a.max_n,
                                                   a.final_seconds))

    def expected_bugs(self):
        return ()  # no --expect-bug here: every finding stops the run, unless --keep-going

    # -- libvirtd and the guests

    def libvirt_env(self):
        return {**os.environ, "LIBVIRT_LOG_OUTPUTS": "3:file:%s" % os.path.join(self.daemon.dir, "libvirtd.log")}

    def start_libvirt(self):
        """started_daemons(), with libvirtd's warnings and errors logged into the temp dir."""
        saved = os.environ.get("LIBVIRT_LOG_OUTPUTS")
        os.environ["LIBVIRT_LOG_OUTPUTS"] = self.libvirt_env()["LIBVIRT_LOG_OUTPUTS"]
        try:
            self.daemons = e2e.started_daemons()
        finally:
            if saved is None:
                del os.environ["LIBVIRT_LOG_OUTPUTS"]
            else:
                os.environ["LIBVIRT_LOG_OUTPUTS"] = saved
        if self.daemons:
            print("churn-libvirt: started virtlogd (pid %d) and libvirtd (pid %d)"
                  % (self.daemons["virtlogd"].pid, self.daemons["libvirtd"].pid), flush=True)

    def libvirtd_log_tail(self, n=30):
        try:
            with open(os.path.join(self.daemon.dir, "libvirtd.log"), errors="replace") as f:
                return "".join(collections.deque(f, maxlen=n))
        except OSError:
            return "(no libvirtd log: it was not started by this driver)\n"

    def on_daemon_death(self, what):
        self.check_libvirt(what)

    def check_libvirt(self, where):
        """A finding if virtlogd or libvirtd died (or, if not ours, stopped answering); then they
        are started again, and backend_failed answers of this epoch are plausible."""
        dead = []
        for name in ("virtlogd", "libvirtd"):
            p = self.daemons.get(name)
            if p is not None and p.poll() is not None:
                dead.append((name, "exited with %s" % p.returncode))
        if "libvirtd" not in self.daemons and not e2e.libvirt_up():
            dead.append(("libvirtd", "no longer answers (not started by this driver)"))
        if not dead:
            return False
        self.libvirt_outages += 1
        self.outage_epoch = self.epoch
        self.bad("libvirtd", "%s (%s, epoch %d, %s); brokerd's log tail:\n%s--- libvirtd's log tail ---\n%s" % (
            ", ".join("%s %s" % d for d in dead), where, self.epoch, self.mode, self.daemon.log_tail(30),
            self.libvirtd_log_tail()))
        self.oplog.add("main", "libvirt daemons died: %s; starting them again" % dead)
        for name in ("virtlogd", "libvirtd"):
            if any(name == d[0] for d in dead):
                self.daemons[name] = subprocess.Popen([name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                      env=self.libvirt_env())
        e2e.wait_for("libvirtd back", e2e.libvirt_up, 60)
        self.checks["libvirtd_restarted"] += 1
        return True

    def start_guests(self):
        self.rundir = tempfile.mkdtemp(prefix=self.topo.a[:-1])
        os.chmod(self.rundir, 0o755)  # libvirt-qemu reaches the FIFOs and the console file
        self.guests = [Guest(n, self.rundir) for n in (self.topo.a, self.topo.b, self.topo.c)]
        for g in self.guests:
            g.start()
        for i, g in enumerate(self.guests):
            self.guests[i] = self.wait_booted(g)

    def wait_booted(self, g, tries=3):
        """g once at its command loop; a guest that dies while booting (or never answers) is
        destroyed and booted again, since that is the test guest's trouble, not brokerd's."""
        for attempt in range(tries):
            deadline = time.monotonic() + 240
            try:
                while True:
                    try:
                        if g.read_line(min(deadline, time.monotonic() + 5)) == "@@READY":
                            return g
                    except AssertionError:
                        if time.monotonic() > deadline or not g.running():
                            raise
            except AssertionError:
                tail = g.console_tail()[-400:]
                g.discard()
                self.counts["guest-boot-failed"] += 1
                print("churn-libvirt: %s did not boot (try %d): %s" % (g.name, attempt + 1, tail), flush=True)
                if attempt == tries - 1:
                    raise churn.Fatal("guest %s did not boot %d times" % (g.name, tries))
                g = Guest(g.name, self.rundir)
                g.start()

    def stop_domain(self, name):
        """Destroys a guest under brokerd (its stop event revokes what it held or shared)."""
        self.oplog.add("main", "destroying domain %s" % name)
        e2e.virsh("destroy", name, check=False)
        self.stopped = name
        self.counts["domain-stops"] += 1

    def restart_stopped(self):
        """Boots the stopped guest again (same name, new domain), brokerd running."""
        if not self.stopped:
            return
        i = next(k for k, g in enumerate(self.guests) if g.name == self.stopped)
        old = self.guests[i]
        old.discard()
        g = Guest(old.name, self.rundir)
        self.guests[i] = g
        g.start()
        self.guests[i] = self.wait_booted(g)
        self.oplog.add("main", "domain %s booted again" % g.name)
        self.stopped = None

    # -- checks while the daemon is down

    def down_backend_check(self):
        """While brokerd is down, the record never claims less than the guests hold: a device
        (or a backing file) exists only for a region the database has, not reclaimed, and a
        device only where the database records that mapping. libvirtd may still be carrying out
        an attach or a detach the dead daemon asked for; both were recorded before they were
        asked for, so the snapshot (read first) already covers them."""
        v, t = self.view, self.topo
        for g in self.guests:
            devs = guest_devices(g.name)
            if devs is None:
                if g.name != self.stopped:
                    self.bad("guest", "virsh dumpxml %s failed while brokerd was down (libvirt's log: %s)"
                             % (g.name, g.qemu_log_tail()))
                continue
            for rid in sorted(devs):
                r = v.regions.get(rid)
                if r is None or r["state"] == "reclaimed":
                    self.bad("untracked" if r is None else "reachable", "while brokerd was down, %s had the device "
                             "of region %d, which the database %s" % (g.name, rid, "does not have" if r is None
                                                                       else "has reclaimed"))
                    continue
                held = bool(r["owner_mapped"]) if g.name == r["owner"] else \
                    bool(v.peers.get(rid, {}).get(g.name, {}).get("mapped"))
                if not held:
                    self.bad("untracked", "while brokerd was down, %s had the device of region %d (%s), which the "
                             "database does not record as mapped there (peers %s, owner_mapped %d)"
                             % (g.name, rid, r["state"], v.peers.get(rid), r["owner_mapped"]))
        for rid in sorted(e2e.backing_files(t.pool)):
            st = v.regions.get(rid, {}).get("state")
            if st in (None, "reclaimed"):
                self.bad("files", "while brokerd was down, region %d had a backing file; the database %s"
                         % (rid, "does not have it" if st is None else "has it reclaimed"))
        self.checks["down_xml"] += 1

    # -- checks after a restart (the daemon up, the agents idle)

    def scan_audit(self):
        """Reconciliation's audit rows (the new ones, before the replay moves on): a repair or an
        escalation can follow a crash, but a device brokerd did not know of never should, since
        every mapping is recorded before it is made and kept until its removal is confirmed."""
        for (seq, actor, rid, domain, action, frm, to, reason) in self.view.audit_rows:
            if seq <= self.replay.last_seq:
                continue
            if action in ("repair", "detach-unknown") or action.startswith("escalate-"):
                self.counts["audit:" + action] += 1
            if action == "detach-unknown":
                self.bad("untracked", "audit seq %d: %s (region %s, %s)" % (seq, reason, rid, domain))

    def live_check(self, final=False, conns=0, what="after restart"):
        """Waits (up to --converge-timeout) until brokerd, its database and the guests' live XML
        agree. Checks on one database snapshot fail at once; the comparisons with the guests and
        the daemon's memory are retried while removals, deadlines and deferred retries run.
        Returns False if the daemon died meanwhile (a crashpoint on those paths)."""
        t0 = time.monotonic()
        deadline = t0 + self.args.converge_timeout
        attempt = 0

        def checks(soft):
            self.guest_check()
            self.db_check(soft)
            listed = self.memory_check(soft)
            self.xml_check(listed, soft)
            self.doorbell_check(listed, soft)
            self.fd_check(soft, conns)
            self.held_check(soft)
        while True:
            soft = self.check_attempt(final, what, checks)
            if soft is None:
                return False
            self.settle_violations("%s: database against guests and daemon" % what)
            if not soft:
                self.checks["live_check"] += 1
                if attempt:
                    self.checks["live_check_retried"] += 1
                self.converge_times.append(time.monotonic() - t0)
                return True
            if not self.daemon.alive():
                return False
            attempt += 1
            self.checks["live_check_attempt_failed"] += 1
            self.retry_reasons.update({kind for kind, _ in soft})
            if time.monotonic() > deadline:
                if self.check_libvirt("no convergence"):
                    deadline = time.monotonic() + self.args.converge_timeout
                    self.settle_violations("libvirtd died")
                    continue
                self.oplog.add("main", "did not converge in %ss: %s" % (self.args.converge_timeout, soft))
                for kind, text in soft:
                    self.bad(kind, "not converged after %.0fs: %s" % (time.monotonic() - t0, text))
                self.settle_violations("%s: no convergence" % what)
                return True
            time.sleep(min(0.1 + 0.05 * attempt, 0.5))

    def guest_check(self):
        for g in self.guests:
            if g.name != self.stopped and not g.running():
                self.bad("guest", "domain %s is no longer running (libvirt's log: %s; console: %s)"
                         % (g.name, g.qemu_log_tail(), g.console_tail()[-300:]))
                self.settle_violations("a guest died")
                raise churn.Fatal("guest %s died" % g.name)

    def db_check(self, soft):
        """The rows: settled, nothing stuck, tokens, final regions, ranges."""
        v = self.view
        nonfinal = {r["id"]: r for r in v.nonfinal()}
        now = churn.now_usec()
        for rid, r in nonfinal.items():
            peers = v.peers.get(rid, {})
            self.region_row_check(rid, r, peers, now, soft)
            for dom, p in peers.items():
                if p["state"] == "granted" and p["mapped"]:
                    self.bad("db", "region %d peer %s is granted but mapped" % (rid, dom))
        self.final_rows_check()
        pool = self.topo.platform["pools"][0]
        pb, ps, g = (churn.parse_size(pool[k]) for k in ("base", "size", "granule"))
        spans = sorted((r["base"], r["base"] + r["size"], rid) for rid, r in nonfinal.items())
        for a, b in zip(spans, spans[1:]):
            if b[0] < a[1]:
                self.bad("overlap", "regions %d [%#x, %#x) and %d [%#x, %#x) overlap" % (a[2], a[0], a[1], b[2], b[0],
                                                                                        b[1]))
        for rid, r in nonfinal.items():
            if r["pool"] != self.topo.pool or r["base"] < pb or r["base"] + r["size"] > pb + ps or r["base"] % g or \
                    r["size"] & (r["size"] - 1):
                self.bad("overlap", "region %d [%#x, +%d) is not inside the pool, not aligned or not a power of two"
                         % (rid, r["base"], r["size"]))

    def route_check(self, c, nonfinal, soft):
        """Routes lead to the newest live region that still has that peer; none otherwise (the
        pool never runs out, so there is no bounce)."""
        v = self.view
        for dom in self.topo.peers:
            r = c.call("route.lookup", {"device": DEVICE, "domain": dom})
            cands = [rid for rid, reg in nonfinal.items() if reg["state"] in LIVE
                     and churn.dbp_state(v, rid, dom) not in (None,) + FINAL_PEER]
            want = {"route": "none"} if not cands else None
            got = r.get("region") if r["route"] == "region" else None
            if (cands and got != max(cands)) or (want and r != want):
                soft.append(("route", "route %s/%s answers %s; the newest live region for it is %s"
                             % (DEVICE, dom, r, max(cands) if cands else None)))

    def xml_check(self, listed, soft):
        """Every guest's live XML against region.list (divergence()) and the database."""
        t, v = self.topo, self.view
        devs = {}
        for g in self.guests:
            d = guest_devices(g.name)
            if d is None:
                if g.name != self.stopped:
                    soft.append(("xml", "virsh dumpxml %s failed" % g.name))
                d = {}
            devs[g.name] = d
        seen = {name: set(d) for name, d in devs.items()}
        problems = e2e.divergence(listed, seen, t.pool, lambda rid: listed[rid]["size"] if rid in listed else None)
        if problems:
            soft.append(("converge", problems))
        for name, d in devs.items():
            for rid, dev in d.items():
                shm_name, size = dev.name, dev.size
                if v.regions.get(rid, {}).get("state") == "reclaimed":
                    soft.append(("reachable", "reclaimed region %d is still plugged into %s" % (rid, name)))
                if shm_name != "brokerd-%s-%d" % (t.pool, rid):
                    self.bad("xml", "%s: device ua-brokerd-%d has name %r" % (name, rid, shm_name))
                if rid in listed:
                    bells = self.vectors(listed[rid])
                    want_dev = ("ivshmem-doorbell", os.path.join(t.ivshmem_dir, "region-%d.sock" % rid), bells) \
                        if bells else ("ivshmem-plain", None, None)
                    if (dev.model, dev.server, dev.vectors) != want_dev:
                        self.bad("xml", "%s: device ua-brokerd-%d is %s, region %d wants %s"
                                 % (name, rid, (dev.model, dev.server, dev.vectors), rid, want_dev))
                    if bells:
                        continue  # no <size>: QEMU takes the memory from the server
                want = v.regions.get(rid, {}).get("size")
                # libvirt writes the size in whole MiB: a smaller region shows as 0, and as 4 MiB
                # (its default) once a restarted libvirtd has read that back. QEMU got the bytes.
                if want and want >= MiB and size != want:
                    self.bad("xml", "%s: device ua-brokerd-%d has size %d, the region %d" % (name, rid, size, want))
        # Backing files: exactly the regions not reclaimed (divergence() checks the set against
        # region.list, the mode and the size); here the owner and the contents.
        files = e2e.backing_files(t.pool)
        for rid in files:
            r = v.regions.get(rid)
            if r is None or r["state"] == "reclaimed":
                soft.append(("files", "backing file of region %d exists; the region is %s"
                             % (rid, r["state"] if r else "not in the database")))
                continue
            try:
                st = os.lstat(t.path(rid))
                with open(t.path(rid), "rb") as f:
                    head = f.read(len(SIG_MAGIC) + 12)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_uid != self.qemu_uid:
                soft.append(("files", "backing file of region %d: mode %o uid %d (the QEMU user is %d)"
                             % (rid, st.st_mode, st.st_uid, self.qemu_uid)))
            sig = self.world.sigs.get(rid)
            if sig and head != sig:
                soft.append(("data", "region %d (%s) lost its contents across restarts: %r, not %r"
                             % (rid, r["state"], head, sig)))

    @staticmethod
    def vectors(region):
        """A region.list entry's doorbell vectors (0: an ivshmem-plain region)."""
        return (region.get("doorbells") or {}).get("vectors", 0)

    def ivshmem_sockets(self):
        """brokerd's unix sockets on its ivshmem directory: {"socket:[inode]": (region, listening)}."""
        out = {}
        for link, (path, listening) in e2e_guests.unix_sockets(self.daemon.pid, self.topo.ivshmem_dir).items():
            m = re.fullmatch(r"region-(\d+)\.sock", os.path.basename(path))
            if m:
                out[link] = (int(m.group(1)), listening)
        return out

    def doorbell_check(self, listed, soft):
        """Doorbell regions reconciled like plain ones: a socket file, a listening server and fds in
        the fd store ("ivs-<id>-...") exactly for the doorbell regions brokerd lists; none, and no
        connection either, for a region that is gone or has no doorbells."""
        want = {rid for rid, r in listed.items() if self.vectors(r)}
        files = {}
        for f in os.listdir(self.topo.ivshmem_dir) if os.path.isdir(self.topo.ivshmem_dir) else ():
            m = re.fullmatch(r"region-(\d+)\.(sock|peers)", f)
            if not m:
                soft.append(("doorbell", "%s has %s" % (self.topo.ivshmem_dir, f)))
                continue
            files.setdefault(m.group(2), set()).add(int(m.group(1)))
        if files.get("sock", set()) != want:
            soft.append(("doorbell", "sockets of regions %s; the doorbell regions are %s"
                         % (sorted(files.get("sock", ())), sorted(want))))
        if not files.get("peers", set()) <= want:
            soft.append(("doorbell", "peer tables of regions %s; the doorbell regions are %s"
                         % (sorted(files["peers"]), sorted(want))))
        served, conns = set(), set()
        for rid, listening in self.ivshmem_sockets().values():
            (served if listening else conns).add(rid)
        if served != want or not conns <= want:
            soft.append(("doorbell", "brokerd serves regions %s and holds connections of %s; the doorbell "
                         "regions are %s" % (sorted(served), sorted(conns), sorted(want))))
        self.eventfd_check(listed, soft)
        stored = {int(n.split("-")[1]) for n in self.daemon.store.names() if re.match(r"ivs-\d+-", n)}
        if not stored <= want:
            soft.append(("fdstore", "the fd store holds doorbell fds of regions %s; the doorbell regions are %s"
                         % (sorted(stored), sorted(want))))
        self.checks["doorbell_check"] += 1

    def eventfd_check(self, listed, soft):
        """brokerd's eventfds: those it had at its first start, the ivshmem host thread's, and at
        most one per vector of every party of a doorbell region it lists (from the baseline on)."""
        if self.baseline is None:
            return
        bound = self.baseline_eventfds + IVSHMEM_HOST_EVENTFDS + sum(
            self.vectors(r) * (1 + len(r["peers"])) for r in listed.values())
        n = list(self.daemon.fds().values()).count(EVENTFD)
        if n > bound:
            soft.append(("leak", "the daemon holds %d eventfds; at most %d for the doorbell regions it lists"
                         % (n, bound)))

    def fd_check(self, soft, conns):
        """The daemon's /proc/PID/fd: no fd on a reclaimed or deleted region file; no fd growth."""
        v = self.view
        other = 0
        prefix = re.escape(os.path.join(e2e.SHM_DIR, "brokerd-%s-" % self.topo.pool))
        fds = self.daemon.fds()
        for fd, link in fds.items():
            m = re.fullmatch(prefix + r"(\d+)( \(deleted\))?", link)
            if not m:
                other += not self.is_region_fd(link)  # doorbells' fds: doorbell_check()
                continue
            rid = int(m.group(1))
            st = v.regions.get(rid, {}).get("state")
            if m.group(2) or st in (None, "reclaimed"):
                soft.append(("leak", "the daemon holds fd %d on %s; region %d is %s" % (fd, link, rid, st)))
        if self.baseline is not None and other > self.baseline + conns + 4:
            soft.append(("leak", "the daemon has %d fds besides region files; %d at its first start, %d connections: %s"
                         % (other, self.baseline, conns, sorted(fds.values()))))

    def held_check(self, soft):
        """The driver's fds on backing files: the file itself while the region lives; once it is
        reclaimed, unlinked and scrubbed."""
        v = self.view
        with self.world.lock:
            items = list(self.world.held.items())
        for rid, (fd, size) in items:
            r = v.regions.get(rid)
            if r is None:
                continue
            st = os.fstat(fd)
            if r["state"] != "reclaimed":
                try:
                    fst = os.stat(self.topo.path(rid))
                except FileNotFoundError:
                    continue  # reported by the file checks
                if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                    soft.append(("backend", "region %d's backing file was replaced" % rid))
                continue
            if st.st_nlink != 0:
                soft.append(("reachable", "region %d is reclaimed; its backing file is still linked" % rid))
            for off in sorted({0, max(0, size - 4096)}):
                if os.pread(fd, 4096, off) != bytes(4096):
                    self.bad("scrub", "region %d is reclaimed; its memory still has data at offset %d" % (rid, off))

    def close_reclaimed_fds(self):
        with self.world.lock:
            for rid in [k for k in self.world.held if self.view.regions.get(k, {}).get("state") == "reclaimed"]:
                os.close(self.world.held.pop(rid)[0])
                self.world.sigs.pop(rid, None)

    def judge_backend_failures(self):
        with self.world.lock:
            items, self.world.backend_failures = self.world.backend_failures, []
        if not items:
            return
        if self.check_libvirt("backend_failed answers") or self.outage_epoch == self.epoch:
            self.counts["backend_failed:libvirtd-away"] += len(items)
            return
        # brokerd refuses to plug into a domain while one of its doorbell devices is still being
        # unplugged (QEMU 7.2's stale handlers, docs/guest-doorbells.md): each such refusal is in its log.
        try:
            with open(self.daemon.d.log, errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        busy = {}
        for domain, what in items:
            if domain == self.stopped:
                self.counts["backend_failed:domain-stopped"] += 1
                continue
            busy[domain] = busy.get(domain, 0) + 1
            logged = len(re.findall(r"not attaching \S+ to %s yet: a doorbell device" % re.escape(domain), text))
            if busy[domain] <= logged:
                self.counts["backend_failed:doorbell-unplug-in-flight"] += 1
            else:
                self.bad("unexpected", "%s (libvirtd was up, %s running)" % (what, domain))

    def is_region_fd(self, link):
        """A region's file, or what serves a doorbell region: its sockets, its peers' eventfds and
        pidfds (eventfds are counted apart: eventfd_check())."""
        if link.startswith("socket:["):
            return link in self.ivshmem_sockets()
        return link.startswith(e2e.backing_file(self.topo.pool, "")) or link in (EVENTFD, "anon_inode:[pidfd]")

    # -- main loop

    def run(self):
        a = self.args
        self.daemon = make_brokerd(self.topo)
        self.oplog = churn.OpLog(os.path.join(self.daemon.dir, "ops.log"))
        t0 = time.monotonic()
        print("churn-libvirt: seed %d, %d kills, %d agents, brokerd %s, files in %s" % (
            self.seed, a.kills, a.agents, harness.BROKERD, self.daemon.dir), flush=True)
        failed = False
        try:
            try:
                self.timed("setup", self.setup)
                print("churn-libvirt: guests %s running (%.0fs)" % (", ".join(g.name for g in self.guests),
                                                                   time.monotonic() - t0), flush=True)
                self.mode = ("baseline",)
                if not self.start_epoch_daemon({}):
                    raise churn.Fatal("brokerd did not start:\n" + self.daemon.log_tail())
                self.live_check()
                # The fd baseline, once the checks have used every kind of request once.
                self.baseline, fds = self.settled_fds()
                self.baseline_eventfds = list(fds.values()).count(EVENTFD)
                self.daemon.proc.send_signal(signal.SIGTERM)
                if self.daemon.wait() != 0:
                    self.bad("crash", "brokerd exited %s on SIGTERM" % self.daemon.proc.returncode)
                self.after_kill()
                for self.epoch in range(1, a.kills + 1):
                    self.one_epoch()
                    if a.progress and self.epoch % a.progress == 0:
                        print("churn-libvirt: %d/%d kills, %d ops, %d findings, %.0fs" % (
                            self.epoch, a.kills, self.counts["ops"], len(self.findings), time.monotonic() - t0),
                            flush=True)
                self.epoch += 1
                self.final_phase()
            except churn.Fatal as e:
                failed = True
                if str(e) and not any(str(e) == w for w in self.fatal_wheres):
                    self.findings.append(("fatal", str(e)))
                    self.fail([("fatal", str(e))], "run")
            except Exception:
                failed = True
                self.findings.append(("driver", traceback.format_exc()))
                self.fail(self.findings[-1:], "run")
        finally:
            self.stop.set()
            self.teardown()
        failed = failed or bool(self.findings)
        self.summary(time.monotonic() - t0, failed)
        if not failed and not a.keep:
            shutil.rmtree(self.daemon.dir, ignore_errors=True)
        return 1 if failed else 0

    def setup(self):
        subprocess.run([os.path.join(HERE, "..", "e2e", "build-guest.sh"), e2e.GUEST_DIR], check=True, timeout=900,
                       stdout=subprocess.DEVNULL)
        self.start_libvirt()
        self.start_guests()

    def teardown(self):
        """Everything this run started, by pid and by name: brokerd, the guests, leftover
        backing files, libvirtd and virtlogd."""
        if self.daemon and self.daemon.alive():
            self.daemon.kill()
        with self.world.lock:
            for fd, _ in self.world.held.values():
                os.close(fd)
            self.world.held = {}
        for g in self.guests:
            try:
                g.stop()
                if not self.findings:
                    g.remove_log()
            except Exception as e:  # keep cleaning up
                print("churn-libvirt: stopping %s: %s" % (g.name, e))
        for rid in e2e.backing_files(self.topo.pool):
            try:
                os.unlink(self.topo.path(rid))
            except FileNotFoundError:
                pass
        if self.rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
        for name in ("libvirtd", "virtlogd"):
            if name in self.daemons:
                e2e.stop_proc(self.daemons[name])
        if self.oplog:
            self.oplog.close()
        if self.daemon and self.daemon.store:
            self.daemon.store.close()
        if self.daemon and self.daemon.logf:
            self.daemon.logf.close()

    # -- the hooks of an epoch and of the final phase

    def before_start(self, where):
        self.check_libvirt(where)
        self.settle_violations("libvirtd died")

    def policy_text(self, which):
        return self.topo.policies[which]

    def start_failed(self):
        self.check_libvirt("brokerd exited while starting")

    def after_converged(self):
        if self.stopped:
            self.timed("guest boots", self.restart_stopped)

    def disturbance(self, mode):
        # A guest destroyed under brokerd: always before an unmap-recorded crashpoint (with
        # libvirt only an unmap that completes at once, a domain already gone, reaches it), and
        # in --domain-stops of the other epochs. It stays down until the next restart converged.
        if (mode[0] == "crashpoint" and mode[1] == "unmap-recorded") or \
                (mode[0] != "crashpoint" and self.rng.random() < self.args.domain_stops):
            t = self.topo
            return (self.rng.choices([t.a, t.b, t.c], [20, 40, 40])[0],
                    self.rng.uniform(0.05, mode[1] if mode[0] == "random" else 1.0))
        return None

    def disturb(self, what):
        self.stop_domain(what)

    def after_churn(self):
        self.judge_backend_failures()
        self.judge_stale_fills()

    def judge_stale_fills(self):
        """Every TCG doorbell unplug's stale fd numbers filled (brokerd/backend/libvirt-stale.c): a
        fill that failed leaves a handler on a number the next fd takes (QEMU crashes later)."""
        try:
            with open(self.daemon.d.log, errors="replace") as f:
                f.seek(self.stale_log_pos)
                text = f.read()
                self.stale_log_pos = f.tell()
        except (OSError, AttributeError):
            return
        self.counts["stale:filled"] += len(re.findall(r"stale doorbell fd number\(s\) of region \d+ filled", text))
        self.counts["stale:by-count"] += len(re.findall(r"placeholder fds given for region", text))
        for line in text.splitlines():
            if "keeps a stale doorbell handler" in line or "its stale handler may run" in line:
                self.bad("stale", line.strip())

    def final_live_check(self, what, final=True):
        if not self.live_check(final=final, what=what):
            raise churn.Fatal("brokerd died in the final phase")

    def await_nothing_left(self):
        """Every device leaves every guest, no backing file is left."""
        t_end = time.monotonic() + self.args.converge_timeout

        def all_gone():
            self.live_snapshot()
            return not self.view.nonfinal() and not any(guest_devices(g.name) for g in self.guests) \
                and not e2e.backing_files(self.topo.pool)
        while not all_gone() and time.monotonic() < t_end:
            time.sleep(0.2)
        for r in self.view.nonfinal():
            self.bad("stuck", "region %d is still %s after a forced revoke of everything" % (r["id"], r["state"]))
        for g in self.guests:
            left = guest_devices(g.name)
            if left:
                self.bad("stuck", "%s still has brokerd devices %s after everything was revoked"
                         % (g.name, sorted(left)))
        left = e2e.backing_files(self.topo.pool)
        if left:
            self.bad("leak", "backing files left in %s: %s" % (e2e.SHM_DIR, sorted(left)))

    def final_fd_check(self):
        """Nothing left: no region file, no doorbell socket or connection, no pidfd, no eventfd but
        the ivshmem host thread's; other fds back at the baseline (the host thread's loop aside)."""
        self.judge_stale_fills()
        self.final_file_check()
        other, fds = self.settled_fds()
        links = list(fds.values())
        socks = self.ivshmem_sockets()
        left = [link for link in links if link in socks or link == "anon_inode:[pidfd]"
                or link.startswith(e2e.backing_file(self.topo.pool, ""))]
        eventfds = links.count(EVENTFD) - self.baseline_eventfds
        if left or eventfds > IVSHMEM_HOST_EVENTFDS:
            self.bad("leak", "the daemon still holds %s and %d eventfds" % (left, eventfds))
        host = IVSHMEM_HOST_FDS if eventfds else 0
        if self.baseline is not None and other > self.baseline + 1 + host:
            self.bad("leak", "the daemon has %d fds, %d at its first start: %s" % (other, self.baseline, sorted(links)))
        self.final_fds = (other, self.baseline)

    def final_file_check(self):
        """await_nothing_left() checked the backing files; no socket or peer table left, nothing in
        the fd store."""
        left = os.listdir(self.topo.ivshmem_dir) if os.path.isdir(self.topo.ivshmem_dir) else []
        if left:
            self.bad("leak", "left in %s: %s" % (self.topo.ivshmem_dir, left))
        self.daemon.store.settle()
        if self.daemon.store.names():
            self.bad("leak", "the fd store still holds %s after everything was reclaimed" % self.daemon.store.names())

    def summary(self, elapsed, failed):
        ops = self.counts.get("ops", 0)
        kills = sum(self.kills.values())
        ct = sorted(self.converge_times)
        lines = ["churn-libvirt: %s: seed %d, %d kills (%s), %d ops, %.1fs" % (
            "FAILED" if failed else "ok", self.seed, kills,
            ", ".join("%s %d" % kv for kv in sorted(self.kills.items())), ops, elapsed)]
        lines.append("churn-libvirt: checks: %s; audit rows replayed %d; regions %d (%d reclaimed); acknowledged "
                     "shares settled %d" % (", ".join("%s %d" % kv for kv in sorted(self.checks.items())),
                                             self.replay.rows, len(self.view.regions), len(self.view.final),
                                             self.oracle.retired + len(self.oracle.shares)))
        if ct:
            lines.append("churn-libvirt: convergence after a restart: median %.2fs, 90%% %.2fs, max %.2fs" % (
                ct[len(ct) // 2], ct[int(len(ct) * 0.9)], ct[-1]))
        if self.retry_reasons:
            lines.append("churn-libvirt: attempts that had not converged yet, by reason (transient): %s"
                         % dict(self.retry_reasons))
        lines.append("churn-libvirt: time: %s" % ", ".join("%s %.1fs" % kv for kv in sorted(self.phase_time.items())))
        lines.append("churn-libvirt: crashpoints fired/tried: %s" % ", ".join(
            "%s %d/%d" % (p, self.cp_hits[p], self.cp_tries[p]) for p in self.points))
        lines.append("churn-libvirt: outcomes: %s" % ", ".join("%s %d" % kv for kv in sorted(self.counts.items())
                                                             if kv[0] != "ops"))
        lines.append("churn-libvirt: libvirtd outages: %d" % self.libvirt_outages)
        if hasattr(self, "final_fds"):
            lines.append("churn-libvirt: final fds besides region files %d (baseline %d)" % self.final_fds)
        if self.findings:
            kinds = collections.Counter(k for k, _ in self.findings)
            lines.append("churn-libvirt: %d findings (seed %d): %s" % (len(self.findings), self.seed, dict(kinds)))
        print("\n".join(lines), flush=True)
        self.write_summary_json(elapsed, failed,
                                converge_seconds=dict(median=ct[len(ct) // 2], max=ct[-1]) if ct else None,
                                retry_reasons=dict(self.retry_reasons), libvirt_outages=self.libvirt_outages)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    churn.add_arguments(p, agents=3, max_n=4, final_seconds=8.0)
    p.add_argument("--converge-timeout", type=float, default=60.0,
                   help="seconds a restart may take to converge with the guests")
    p.add_argument("--domain-stops", type=float, default=0.03,
                   help="share of epochs (besides those of the unmap-recorded crashpoint) that destroy a guest "
                        "during the churn; it boots again after the next restart")
    p.add_argument("--doorbells", type=float, default=0.4,
                   help="share of shares that are doorbell regions (doorbells 1, 2 or 4: ivshmem-doorbell devices "
                        "served by brokerd)")
    p.add_argument("--xml-sample", type=float, default=0.1,
                   help="share of shares and attaches whose device is looked up in the live XML at once")
    p.add_argument("--ci", action="store_true",
                   help="the short form: 15 kills, 3 agents, short epochs (unless given explicitly)")
    args = churn.parse_arguments(p, dict(kills=15, max_delay=0.8, cp_timeout=4.0, final_seconds=3.0, max_n=3))
    if os.geteuid() != 0 or os.environ.get("BROKERD_E2E") != "1":
        print("churn-libvirt: SKIP: needs root and BROKERD_E2E=1 (boots three VMs through libvirt)")
        return 77
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    if churn.use_brokerd(args, "churn-libvirt"):
        return 2
    # meson's timeout sends SIGTERM: unwind, so that the guests and libvirtd are cleaned up.
    signal.signal(signal.SIGTERM, on_sigterm)
    return Run(args).run()


def on_sigterm(signum, frame):
    raise SystemExit("churn-libvirt: terminated (SIGTERM); cleaning up")


if __name__ == "__main__":
    sys.exit(main())
