#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Crash-consistency churn: brokerd is SIGKILLed again and again under a random mix of share,
attach, release, revoke, policy reload and reads from several agent connections, and every
restart is checked against what the clients were told and what the backend really holds.

    churn.py --kills 500 --agents 4 [--seed S]          # the long form
    churn.py --ci                                       # the short form meson runs (suite crash)
    churn.py --ci --fdstore                             # the same under systemd's fd store

Each kill is one of
  * a crashpoint: the daemon starts with BROKERD_CRASHPOINT=<name>:<N> (brokerd/util/crashpoint.h)
    and kills itself at the N-th passage of that durable step; the names are taken in a shuffled
    cycle so every step reachable with this backend is hit over a run;
  * a random SIGKILL while the agents run (random delay), or during startup and recovery;
  * once, at the start, a scripted one: a bounce answered while a region serves the route.

While the daemon is down, a copy of its database (db + wal, so the daemon still finds the crash
state) gets PRAGMA integrity_check and foreign_key_check, and the record is checked against the
clients' acknowledgements. After each restart: the audit trail replayed (every transition and
range allocation at its commit point), the database against the shm pool directory, the
daemon's /proc/PID/fd (one master fd per region, no memfd or file of a reclaimed region), the
daemon's in-memory view (admin region.list, region.get, route.lookup, admin.domains,
admin.pools) and the fds the agents hold (same inode as the pool file; zeros once reclaimed).
At the end: a clean revoke of everything, an empty pool directory, no memfds, the fd count
back at its baseline, SIGTERM exiting 0. docs/crash-consistency.md lists every check.

Every failure prints the seed, the op log tail and the daemon's log tail. The seed fixes the
kill schedule and each agent's choices; thread interleaving and kill timing are not
reproducible exactly, so rerun a failing seed a few times (and see the op log).

Exit status: 0 clean, 1 findings, 77 not root. With --expect-bug KIND (a known brokerd bug, for
a meson test marked should_fail): 1 if every finding is of those kinds, 99 if any other is.
"""
import argparse
import collections
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import fdstore  # noqa: E402
import harness  # noqa: E402

# Every crashpoint, in lifecycle order (brokerd/core/broker.c), then the group sync's (committed,
# not yet flushed nor told: brokerd/daemon/manager.c). The memfd backend unmaps at
# once, so the two points of an asynchronous unmap (libvirt) cannot be reached here, nor the
# libvirt backend's fill of a TCG guest's stale doorbell fd numbers (brokerd/backend/libvirt-stale.c).
CRASHPOINTS = ["share-recorded", "share-created", "share-mapped", "attach-recorded", "attach-mapped",
               "release-recorded", "revoke-recorded", "revoke-forced", "unmap-requested", "unmap-recorded",
               "stale-filling", "unmap-confirmed", "reclaim-scrubbed", "reclaim-destroyed", "reclaimed",
               "sync-pending"]
ASYNC_UNMAP_ONLY = {"unmap-requested", "unmap-confirmed", "stale-filling"}

SHM_POOL, MEMFD_POOL = "net0", "gpu1"
KiB, MiB = 1024, 1024 * 1024
LIVE = ("offered", "active")
FINAL_PEER = ("released", "revoked")
DEADLINES_MS = [0, 0, 50, 200, 800, 2000]
SIG_MAGIC = b"CHRN"
ROUTES = [("nic0", "vm1"), ("nic0", "vm2"), ("gpu0", "vm1"), ("gpu0", "vm2")]
STUCK_SLACK_USEC = 8 * 1000000  # a revoke past its deadline this long is stuck (busy machines: generous)


def source_crashpoints():
    """Crashpoint names in the source tree (if it is there), so a new one is never left out."""
    names = set()
    for root, _, files in os.walk(os.path.join(SRC, "brokerd")):
        for f in files:
            if f.endswith(".c"):
                try:
                    with open(os.path.join(root, f)) as fh:
                        names.update(re.findall(r'crashpoint\("([a-z0-9-]+)"\)', fh.read()))
                except OSError:
                    pass
    return names


def make_policies():
    p0 = json.loads(json.dumps(harness.POLICY))
    p0["quotas"] = [{"domain": "hw0", "max_bytes": "100MiB", "max_regions": 40}]
    p1 = json.loads(json.dumps(p0))
    # Reload to a stricter policy: nic0 -> vm2 no longer allowed, a smaller quota.
    p1["shares"] = [s for s in p1["shares"] if not (s["device"] == "nic0" and s["peers"] == ["vm2"])]
    p1["quotas"] = [{"domain": "hw0", "max_bytes": "48MiB", "max_regions": 20}]
    bad = '{"agents": [], "shares": [{"sharer": "hw0"}]}'
    return {"p0": json.dumps(p0), "p1": json.dumps(p1), "bad": bad}


POLICIES = make_policies()


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def now_usec():
    return time.time_ns() // 1000


def u64(v):
    return v & 0xFFFFFFFFFFFFFFFF


class Fatal(Exception):
    """A check failed: stop and report."""


class Disconnected(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# op log and violations


class OpLog:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.tail = collections.deque(maxlen=500)
        self.f = open(path, "w")
        self.t0 = time.monotonic()
        self.count = 0

    def add(self, who, text):
        line = "%9.3f %-6s %s" % (time.monotonic() - self.t0, who, text)
        with self.lock:
            self.tail.append(line)
            self.f.write(line + "\n")
            self.count += 1

    def close(self):
        self.f.close()


class Violations:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, kind, text):
        with self.lock:
            self.items.append((kind, text))

    def take(self):
        with self.lock:
            items, self.items = self.items, []
        return items


# ---------------------------------------------------------------------------------------------
# the database, read incrementally


class DBView:
    """Regions and peers as the database has them. Reclaimed regions are final: they are read
    once, then only counted (a count that moves back means a reclaimed region changed)."""

    def __init__(self):
        self.regions = {}   # id -> dict
        self.peers = {}     # id -> {domain: dict}
        self.final = set()  # reclaimed
        self.max_id = 0
        self.by_label = {}
        self.audit_rows = []  # the rows read by the last load (seq > replay.last_seq)

    def load(self, con, after_seq, bad):
        con.execute("BEGIN")
        try:
            nonfinal = [i for i in self.regions if i not in self.final]
            ids = ",".join(str(i) for i in nonfinal) or "NULL"
            rows = con.execute("SELECT id, owner, device, pool, label, base, size, state, deadline, owner_mapped, "
                               "created, updated FROM regions WHERE id > ? OR id IN (%s)" % ids,
                               (self.max_id,)).fetchall()
            prow = con.execute("SELECT region, domain, access, state, token, mapped FROM peers WHERE region > ? "
                               "OR region IN (%s)" % ids, (self.max_id,)).fetchall()
            total, reclaimed = con.execute(
                "SELECT count(*), coalesce(sum(state = 'reclaimed'), 0) FROM regions").fetchone()
            self.audit_rows = con.execute(
                "SELECT seq, actor, region, domain, action, from_state, to_state, reason FROM audit WHERE seq > ? "
                "ORDER BY seq", (after_seq,)).fetchall()
        finally:
            con.execute("COMMIT")
        for (rid, owner, device, pool, label, base, size, st, deadline, om, created, updated) in rows:
            if rid in self.final:
                bad("db", "region %d was reclaimed and is now %s" % (rid, st))
            self.regions[rid] = dict(id=rid, owner=owner, device=device, pool=pool, label=label, base=u64(base),
                                     size=u64(size), state=st, deadline=deadline, owner_mapped=om, created=created,
                                     updated=updated)
            self.peers[rid] = {}
            if label:
                self.by_label[label] = rid
            self.max_id = max(self.max_id, rid)
        for (rid, domain, access, st, token, mapped) in prow:
            if rid in self.peers:
                self.peers[rid][domain] = dict(access=access, state=st, token=token, mapped=mapped)
        for rid, r in self.regions.items():
            if r["state"] == "reclaimed":
                self.final.add(rid)
        if total != len(self.regions):
            bad("db", "the database has %d regions, %d were seen before (regions are never deleted)"
                % (total, len(self.regions)))
        if reclaimed != len(self.final):
            bad("db", "%d regions reclaimed in the database, %d known reclaimed" % (reclaimed, len(self.final)))

    def nonfinal(self):
        return [r for i, r in self.regions.items() if i not in self.final]


class Replay:
    """Replays the audit trail: every state transition must be audited with the state it left,
    and at every share's commit its range must be free of every region not yet reclaimed."""

    def __init__(self):
        self.last_seq = 0
        self.regions = {}   # id -> {state, peers: {d: state}, pool, base, end, activated_by}
        self.reclaimed = set()
        self.compared_final = set()
        self.rows = 0

    def feed(self, view, bad):
        for (seq, actor, rid, domain, action, frm, to, reason) in view.audit_rows:
            if seq <= self.last_seq:
                continue
            self.last_seq = seq
            self.rows += 1
            if rid is None or action == "bounce":
                continue
            where = "audit seq %d (%s region %s %s)" % (seq, action, rid, domain or "")
            if action == "share":
                r = view.regions.get(rid)
                if r is None or rid in self.regions or rid in self.reclaimed:
                    bad("audit", "%s: no such region in the database, or shared twice" % where)
                    continue
                end = r["base"] + r["size"]
                for oid, o in self.regions.items():
                    if o["pool"] == r["pool"] and o["base"] < end and r["base"] < o["end"]:
                        bad("overlap", "%s: region %d [%#x, %#x) was committed while region %d [%#x, %#x) in "
                            "the same pool was %s, not reclaimed" % (where, rid, r["base"], end, oid, o["base"],
                                                                     o["end"], o["state"]))
                self.regions[rid] = dict(state="offered", pool=r["pool"], base=r["base"], end=end,
                                         peers={d: "granted" for d in view.peers.get(rid, {})}, activated_by=None)
                continue
            r = self.regions.get(rid)
            if r is None:
                if action in ("repair", "detach-unknown") or action.startswith("escalate-"):
                    continue
                bad("audit", "%s: the region is %s" % (where, "reclaimed" if rid in self.reclaimed else "unknown"))
                continue
            peers = r["peers"]
            if action in ("attach", "attach-failed", "release", "void-grant", "revoke-peer"):
                cur = peers.get(domain)
                if cur is None:
                    bad("audit", "%s: no such peer" % where)
                    continue
                if frm != cur:
                    bad("audit", "%s: from %s, but the trail had the peer %s" % (where, frm, cur))
                peers[domain] = to
                if action == "attach" and r["state"] == "offered":
                    r["state"], r["activated_by"] = "active", domain
                if action == "attach-failed" and r["activated_by"] == domain:
                    r["state"], r["activated_by"] = "offered", None
            elif action == "revoke":
                if frm != r["state"] or r["state"] not in LIVE:
                    bad("audit", "%s: from %s, but the trail had the region %s" % (where, frm, r["state"]))
                r["state"] = "revoking"
            elif action == "reclaim":
                if r["state"] != "revoking":
                    bad("audit", "%s: reclaimed from %s, not revoking" % (where, r["state"]))
                for d, st in peers.items():
                    if st == "attached":
                        bad("audit", "%s: reclaimed while %s was still attached" % (where, d))
                del self.regions[rid]
                self.reclaimed.add(rid)

    def compare(self, view, bad):
        """The replayed states must be the database's (same read transaction)."""
        for rid in {r["id"] for r in view.nonfinal()} | set(self.regions) | (view.final - self.compared_final):
            r = view.regions.get(rid)
            if r is None:
                bad("audit", "region %d was shared (audit) but is not in the database" % rid)
                continue
            if rid in self.reclaimed:
                if r["state"] != "reclaimed":
                    bad("audit", "region %d: audited reclaimed, the database says %s" % (rid, r["state"]))
                continue
            rep = self.regions.get(rid)
            if rep is None:
                bad("audit", "region %d (%s) has no share in the audit trail" % (rid, r["state"]))
                continue
            if r["state"] == "reclaimed":
                bad("audit", "region %d is reclaimed without a reclaim audit row" % rid)
                continue
            if rep["state"] != r["state"]:
                bad("audit", "region %d: the database says %s, the audit trail %s" % (rid, r["state"], rep["state"]))
            for d, p in view.peers.get(rid, {}).items():
                if rep["peers"].get(d) != p["state"]:
                    bad("audit", "region %d peer %s: the database says %s, the audit trail %s"
                        % (rid, d, p["state"], rep["peers"].get(d)))
        self.compared_final |= view.final


# ---------------------------------------------------------------------------------------------
# what the clients were told


class Oracle:
    """Facts acknowledged to a client (replies and notifications), checked against every
    database snapshot; and plausibility checks on errors, checked at the next snapshot."""

    def __init__(self):
        self.lock = threading.Lock()
        self.shares = {}         # region -> dict(base, size, pool, device, label, peers {d: (access, token)})
        self.attached = set()    # (region, domain): attach acknowledged (reply) or notified
        self.released = set()    # acknowledged or notified release
        self.revoked_peer = set()  # region.revoked notification
        self.not_live = {}       # region -> why: a revoke/recall acknowledged
        self.reclaimed = {}      # region -> why: reply state reclaimed / reclaimed notification
        self.posthoc = []        # (kind, region, domain, why): error plausibility, checked once
        self.retired = 0
        # What route.lookup must say for (device, domain) when no live region serves it: the
        # last answer to a share on that route was a bounce (recorded: "bounce", reason) or a
        # region (the bounce cleared: "none"); None when a share on it was cut off (unknown).
        self.route_expect = {r: ("none",) for r in ROUTES}

    def check(self, view, bad, final=False):
        regions, peers = view.regions, view.peers
        with self.lock:
            for rid, s in list(self.shares.items()):
                r = regions.get(rid)
                if r is None:
                    bad("lost", "share of region %d was acknowledged; the database has no such region" % rid)
                    continue
                for k in ("base", "size", "pool", "device", "label"):
                    if r[k] != s[k]:
                        bad("lost", "region %d: %s %r acknowledged, the database has %r" % (rid, k, s[k], r[k]))
                for d, (access, token) in s["peers"].items():
                    p = peers.get(rid, {}).get(d)
                    if p is None:
                        bad("lost", "region %d: peer %s acknowledged, not in the database" % (rid, d))
                        continue
                    if p["access"] != access:
                        bad("lost", "region %d peer %s: access %s acknowledged, %s recorded" % (rid, d, access,
                                                                                                 p["access"]))
                    if r["state"] != "reclaimed" and p["token"] != token:
                        bad("lost", "region %d peer %s: the acknowledged token is no longer the recorded one (%s)"
                            % (rid, d, p["token"]))
            for (rid, d) in self.attached:
                st = peers.get(rid, {}).get(d, {}).get("state")
                if st not in ("attached", "released", "revoked"):
                    bad("lost", "attach of region %d by %s was acknowledged; the database says %s" % (rid, d, st))
            for (rid, d) in self.released:
                st = peers.get(rid, {}).get(d, {}).get("state")
                if st != "released":
                    bad("lost", "release of region %d by %s was acknowledged; the database says %s" % (rid, d, st))
            for (rid, d) in self.revoked_peer:
                st = peers.get(rid, {}).get(d, {}).get("state")
                if st != "revoked":
                    bad("lost", "region %d: %s's revocation was notified; the database says %s" % (rid, d, st))
            for rid, why in self.not_live.items():
                st = regions.get(rid, {}).get("state")
                if st not in ("revoking", "reclaimed"):
                    bad("lost", "region %d: %s; the database says %s" % (rid, why, st))
            for rid, why in self.reclaimed.items():
                st = regions.get(rid, {}).get("state")
                if st != "reclaimed":
                    bad("lost", "region %d: %s; the database says %s" % (rid, why, st))
            for (kind, rid, d, why) in self.posthoc:
                r = regions.get(rid)
                st = r["state"] if r else None
                pst = peers.get(rid, {}).get(d, {}).get("state") if d else None
                ok = {"reclaimed": st == "reclaimed",
                      "not_live": st in ("revoking", "reclaimed"),
                      "peer_final": st == "reclaimed" or pst in FINAL_PEER,
                      "peer_not_granted": st == "reclaimed" or pst in ("attached", "released", "revoked"),
                      }[kind]
                if not ok:
                    bad("plausibility", "%s, but the database says region %s, peer %s" % (why, st, pst))
            self.posthoc = []
            # Facts about reclaimed regions are settled: DBView's counts keep them reclaimed.
            done = {rid for rid in self.shares if regions.get(rid, {}).get("state") == "reclaimed"}
            if not final and done:
                self.retired += len(done)
                for rid in done:
                    del self.shares[rid]
                for st in (self.attached, self.released, self.revoked_peer):
                    st.difference_update({k for k in st if k[0] in done})
                for m in (self.not_live, self.reclaimed):
                    for rid in [k for k in m if k in done]:
                        del m[rid]


# ---------------------------------------------------------------------------------------------
# the agents' shared world


class Held:
    def __init__(self, fd, pool, size, epoch):
        self.fd, self.pool, self.size, self.epoch = fd, pool, size, epoch


class World:
    def __init__(self):
        self.lock = threading.RLock()
        self.owned = {}        # region -> dict(pool, size, device, revoked)
        self.grants = {}       # (region, domain) -> dict(token, access, pool, size)
        self.attachments = {}  # (region, domain) -> dict(pool, size)
        self.sigs = {}         # region -> signature the owner wrote at offset 0
        self.held = {}         # (region, who) -> Held: owner and peer fds the agents received
        self.bases = {SHM_POOL: collections.deque(maxlen=64), MEMFD_POOL: collections.deque(maxlen=64)}
        self.policy_lock = threading.Lock()
        # Shares on one route are serialized, so the order of their answers is the daemon's.
        self.route_locks = {r: threading.Lock() for r in ROUTES}
        self.good_policy = "p0"
        self.in_doubt = []     # (kind, detail) of requests cut off by a kill

    def note_base(self, r):
        """Region row r's range, for the place-mode shares that aim at used ranges."""
        self.bases[r["pool"]].append((r["base"], r["size"]))

    def rebuild(self, view, oracle):
        """After a restart: the working set is what the database holds, with what we know."""
        with self.lock:
            self.owned, self.grants, self.attachments = {}, {}, {}
            for r in view.nonfinal():
                rid = r["id"]
                self.owned[rid] = dict(pool=r["pool"], size=r["size"], device=r["device"],
                                       revoked=r["state"] not in LIVE)
                self.note_base(r)
                known = oracle.shares.get(rid, {}).get("peers", {})
                for d, p in view.peers.get(rid, {}).items():
                    if p["state"] == "granted" and r["state"] in LIVE and d in known:
                        self.grants[(rid, d)] = dict(token=known[d][1], access=p["access"], pool=r["pool"],
                                                     size=r["size"])
                    elif p["state"] == "attached":
                        self.attachments[(rid, d)] = dict(pool=r["pool"], size=r["size"])

    def let_go(self, rid):
        """The agents drop every fd of a region being revoked. brokerd reclaims a revoked range only
        once no holder process reaches it (the agents here are all this one process), so a holder
        that kept it would keep it quarantined: that is test_revocation.py's subject, not churn's."""
        with self.lock:
            for key in [k for k in self.held if k[0] == rid]:
                os.close(self.held.pop(key).fd)

    def hold(self, key, held):
        with self.lock:
            old = self.held.pop(key, None)
            if old:
                os.close(old.fd)
            self.held[key] = held


# ---------------------------------------------------------------------------------------------
# the daemon


class Brokerd:
    """One daemon's files (harness.Daemon's temp dir: sockets, db, shm pool, log), started many
    times; spawn() and kill() by pid, the environment as given (BROKERD_CRASHPOINT)."""

    def __init__(self, with_store=False, daemon=None):
        self.d = daemon or harness.Daemon(policy=POLICIES["p0"],
                                          extra_args=["--max-connections-per-uid", "64", "--revoke-timeout", "1s"])
        self.proc = None
        self.logf = None
        self.starts = 0
        # --fdstore: systemd's fd store, played by tests/integration/fdstore.py; parked, since the
        # agents (the holders) live in this process and systemd's fds are not theirs. The store
        # holds each memfd and each holder's pidfd: as large as the unit makes it, never full here.
        self.store = fdstore.FdStore(self.d.dir, max_fds=65536, park=True) if with_store else None

    @property
    def dir(self):
        return self.d.dir

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def spawn(self, env):
        for s in (self.d.agent_socket, self.d.admin_socket):
            if os.path.exists(s):
                os.unlink(s)
        if self.logf:
            self.logf.close()
        self.logf = open(self.d.log, "a")
        self.logf.write("=== churn: start %d %s\n" % (self.starts, " ".join("%s=%s" % kv for kv in env.items())))
        self.logf.flush()
        self.starts += 1
        full = {k: v for k, v in os.environ.items() if k != "BROKERD_CRASHPOINT"}
        full.update(env)
        if self.store:
            self.proc = self.store.spawn(fdstore.brokerd_argv(self.d), env=full, stdout=self.logf, stderr=self.logf,
                                         inherit=False)
            return
        self.proc = subprocess.Popen(fdstore.brokerd_argv(self.d), stdout=self.logf, stderr=self.logf, env=full)

    def wait_ready(self, timeout=60):
        """True once the loop answers on the admin socket; False if the daemon died first."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                return False
            if os.path.exists(self.d.agent_socket) and os.path.exists(self.d.admin_socket):
                try:
                    c = Conn(self.d.admin_socket, 30)
                    try:
                        c.call("broker.info", {}, validate=False)
                        return True
                    finally:
                        c.close()
                except (OSError, ConnectionError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise Fatal("brokerd did not become ready in %ds" % timeout)
            time.sleep(0.01)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.wait()

    def wait(self, timeout=60):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Fatal("brokerd pid %d did not exit" % self.proc.pid)

    def log_tail(self, n=40):
        try:
            with open(self.d.log, errors="replace") as f:
                return "".join(collections.deque(f, maxlen=n))
        except OSError:
            return ""

    def fds(self):
        """The daemon's fds: {fd: link}."""
        out = {}
        base = "/proc/%d/fd" % self.proc.pid
        for n in os.listdir(base):
            try:
                out[int(n)] = os.readlink(os.path.join(base, n))
            except OSError:
                pass
        return out


# jsonschema's RefResolver (Debian 12) keeps state: one validation at a time.
VALIDATE_LOCK = threading.Lock()


class Conn(harness.Client):
    """harness.Client, with schema validation that several threads may share."""

    def __init__(self, path, timeout, validate=True):
        super().__init__(path)
        self.sock.settimeout(timeout)
        self.validate = validate

    ID_LESS_ERROR_IS_RPC_ERROR = False  # churn never sends a line brokerd could refuse so

    def check_notification(self, obj):
        if self.validate:
            with VALIDATE_LOCK:
                super().check_notification(obj)

    def check_reply(self, method, reply):
        with VALIDATE_LOCK:
            super().check_reply(method, reply)

    def call(self, method, params=None, validate=None):
        return super().call(method, params, self.validate if validate is None else validate)

    def drop_fds(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []


# ---------------------------------------------------------------------------------------------
# agents


class Agent(threading.Thread):
    WEIGHTS = [("share", 30), ("attach", 26), ("release", 17), ("revoke", 15), ("reload", 2), ("read", 10)]

    def __init__(self, run, idx, epoch, subscribe):
        super().__init__(name="agent%d" % idx, daemon=True)
        self.run_ = run
        self.idx, self.epoch = idx, epoch
        self.rng = random.Random("%d:%d:%d" % (run.seed, epoch, idx))
        self.subscribe = subscribe
        self.world, self.oracle, self.bad = run.world, run.oracle, run.violations.add
        self.conn = self.admin_conn = None
        self.seq = 0
        self.ops = 0
        self.inflight = None

    # -- plumbing

    def log(self, text):
        self.run_.oplog.add("e%da%d" % (self.epoch, self.idx), text)

    def call(self, conn, method, params):
        """(result, None) or (None, error name); Disconnected when the daemon went away."""
        try:
            return conn.call(method, params), None
        except harness.RpcError as e:
            conn.drop_fds()
            return None, e.name or str(e.code)
        except AssertionError as e:  # a reply off its schema (rpcschema), or with another id
            self.bad("protocol", "%s: %s" % (method, e))
            raise Disconnected("protocol")
        except socket.timeout:
            if self.run_.daemon.alive():
                self.bad("hang", "no reply to %s %s within %ds" % (method, params, self.run_.args.reply_timeout))
            raise Disconnected("timeout")
        except (ConnectionError, OSError, ValueError) as e:
            raise Disconnected(repr(e))

    def connect(self, path):
        return Conn(path, self.run_.args.reply_timeout, self.run_.args.validate)

    def admin(self):
        if self.admin_conn is None:
            try:
                self.admin_conn = self.connect(self.run_.daemon.d.admin_socket)
            except OSError as e:
                raise Disconnected(repr(e))
        return self.admin_conn

    def doubt(self, kind, detail):
        """The request about to be sent: in doubt if the daemon dies before it answers."""
        self.inflight = (kind, detail)

    def run(self):
        current = None
        try:
            try:
                self.conn = self.connect(self.run_.daemon.d.agent_socket)
            except OSError as e:
                raise Disconnected(repr(e))
            if self.subscribe:
                self.call(self.conn, "events.subscribe", {})
            names = [n for n, _ in self.WEIGHTS]
            weights = [w for _, w in self.WEIGHTS]
            while not self.run_.stop.is_set():
                current = self.rng.choices(names, weights)[0]
                getattr(self, "op_" + current)()
                current = None
                self.ops += 1
                self.drain_notifications()
        except Disconnected as e:
            if current:
                self.log("%s cut off: %s" % (current, e))
            if self.inflight:
                with self.world.lock:
                    self.world.in_doubt.append(self.inflight)
            if not self.run_.stop.is_set() and not self.run_.expect_death.is_set():
                # Nobody killed it (yet): a crashpoint fired, or the daemon dropped us.
                try:
                    self.run_.daemon.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.bad("disconnect", "agent %d lost its connection to a live daemon: %s" % (self.idx, e))
        except Exception:
            self.bad("driver", "agent %d: %s" % (self.idx, traceback.format_exc()))
        finally:
            self.drain_notifications()
            for c in (self.conn, self.admin_conn):
                if c:
                    try:
                        c.close()
                    except OSError:
                        pass

    def drain_notifications(self):
        if not self.conn or not self.conn.notifications:
            return
        ns, self.conn.notifications = self.conn.notifications, []
        let_go = set()
        with self.oracle.lock:
            for n in ns:
                p = n["params"]
                rid, d = p.get("region"), p.get("domain")
                m = n["method"]
                if m == "region.reclaimed":
                    self.oracle.reclaimed[rid] = "region.reclaimed was notified"
                elif m == "region.released":
                    self.oracle.released.add((rid, d))
                elif m == "region.attached":
                    self.oracle.attached.add((rid, d))
                elif m == "region.revoked" and d:
                    self.oracle.revoked_peer.add((rid, d))
                    let_go.add(rid)
                elif m == "region.recall":
                    self.oracle.not_live.setdefault(rid, "region.recall was notified")
                    let_go.add(rid)
                elif m == "region.unplug_overdue":
                    self.run_.count("notified:unplug_overdue")
        # Not under the oracle's lock: the world's is taken in the other order elsewhere.
        for rid in let_go:
            self.world.let_go(rid)

    # -- checks on what a reply handed over

    def check_fd(self, fd, rid, pool, size, access, what):
        st = os.fstat(fd)
        if st.st_size != size:
            self.bad("backend", "%s of region %d: the fd is %d bytes, the reply says %d"
                     % (what, rid, st.st_size, size))
        acc = os.O_RDONLY if access == "ro" else os.O_RDWR
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != acc:
            self.bad("backend", "%s of region %d: the fd is not %s" % (what, rid, access))
        if pool == SHM_POOL:
            path = os.path.join(self.run_.daemon.d.shm, "brokerd-%s-%d" % (pool, rid))
            try:
                fst = os.stat(path)
                if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                    self.bad("backend", "%s of region %d is not the file %s" % (what, rid, path))
            except FileNotFoundError:
                return False  # reclaimed meanwhile (checked below by the caller)
        return True

    # -- ops

    def op_share(self):
        rng, w = self.rng, self.world
        kind = rng.choices(["nic", "gpu-shm", "gpu-memfd", "big"], [58, 15, 23, 4])[0]
        if kind == "big":
            # Fills the memfd pool or bounces: a bounce recorded while other regions serve the route.
            device, numa = "gpu0", 1
            peers = rng.choice([[("vm1", "ro")], [("vm2", "ro")]])
            size = rng.choice([24 * MiB, 40 * MiB, 64 * MiB])
        elif kind == "nic":
            device, numa = "nic0", None
            peers = [rng.choice([("vm1", "rw"), ("vm2", "ro")])]
            size = rng.choice([4 * KiB, 12 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 3 * MiB])
        else:
            device, numa = "gpu0", (1 if kind == "gpu-memfd" else None)
            peers = rng.choice([[("vm1", "ro"), ("vm2", "ro")], [("vm1", "ro")], [("vm2", "ro")]])
            size = rng.choice([2 * MiB, 4 * MiB]) if numa else rng.choice([4 * KiB, 64 * KiB, 2 * MiB])
        self.seq += 1
        label = "churn:%d:%d:%d" % (self.epoch, self.idx, self.seq)
        params = {"owner": "hw0", "device": device, "size": size,
                  "peers": [{"domain": d, "access": a} for d, a in peers], "label": label}
        if numa is not None:
            params["numa_node"] = numa
        place = None
        pool = MEMFD_POOL if numa else SHM_POOL
        if rng.random() < 0.12:
            with w.lock:
                cands = list(w.bases[pool])
            if cands:
                place = rng.choice(cands)
                params["base"] = hex(place[0])
                params["size"] = size = place[1]
        routes = sorted({(device, d) for d, _ in peers})
        locks = [w.route_locks[r] for r in routes]
        for lk in locks:
            lk.acquire()
        try:
            self.doubt("share", label)
            try:
                res, err = self.call(self.conn, "region.share", params)
            except Disconnected:
                with self.oracle.lock:
                    for r in routes:
                        self.oracle.route_expect[r] = None
                raise
            self.inflight = None
            if not err:
                with self.oracle.lock:
                    for r in routes:
                        self.oracle.route_expect[r] = ("bounce", res["reason"]) if res["placement"] == "bounce" \
                            else ("none",)
        finally:
            for lk in locks:
                lk.release()
        if err:
            self.log("share %s %s %s peers=%s%s -> %s" % (label, device, size, peers,
                                                          " base=%s" % params["base"] if place else "", err))
            expected = {"quota_exceeded"}
            if kind == "big":
                expected.add("region_too_large")
            if place:
                expected.add("overlaps_region")
            if device == "nic0" and peers[0][0] == "vm2":
                expected.add("forbidden")  # policy p1
            if err not in expected:
                self.bad("unexpected", "share %s answered %s" % (params, err))
            self.run_.count("share:" + err)
            return
        if res["placement"] == "bounce":
            self.log("share %s -> bounce (%s)" % (label, res["reason"]))
            self.run_.count("share:bounce")
            return
        rid, base = res["region"], int(res["base"], 16)
        fd = self.conn.take_fd()
        self.conn.drop_fds()
        tokens = {t["domain"]: t["token"] for t in res["tokens"]}
        with self.oracle.lock:
            self.oracle.shares[rid] = dict(base=base, size=res["size"], pool=res["pool"], device=device, label=label,
                                           peers={d: (a, tokens.get(d)) for d, a in peers})
        self.log("share %s %s %s peers=%s%s -> region %d %#x+%d %s" % (
            label, device, size, peers, " base=%s" % params["base"] if place else "", rid, base, res["size"],
            res["pool"]))
        self.run_.count("share:ok")
        if res["pool"] != pool or res["size"] < size or set(tokens) != {d for d, _ in peers}:
            self.bad("reply", "share %s: reply %s" % (params, res))
        if place and base != place[0]:
            self.bad("reply", "share in place mode at %#x placed at %#x" % (place[0], base))
        # Fresh memory is zero-filled (scrubbed), then the owner signs it.
        for off in sorted({0, max(0, res["size"] - 4096)}):
            if os.pread(fd, 4096, off) != bytes(4096):
                self.bad("scrub", "region %d: new memory is not zeroed at offset %d" % (rid, off))
        sig = SIG_MAGIC + struct.pack("<QI", rid, self.rng.getrandbits(32))
        os.pwrite(fd, sig, 0)
        self.check_fd(fd, rid, res["pool"], res["size"], "rw", "owner fd")
        with w.lock:
            w.sigs[rid] = sig
            w.hold((rid, "hw0"), Held(fd, res["pool"], res["size"], self.epoch))
            w.owned[rid] = dict(pool=res["pool"], size=res["size"], device=device, revoked=False)
            w.bases[res["pool"]].append((base, res["size"]))
            for d, a in peers:
                w.grants[(rid, d)] = dict(token=tokens[d], access=a, pool=res["pool"], size=res["size"])

    # -- what the ops of a backend's churn (churn-libvirt.py) do differently

    def ordered(self, keys):
        """keys (a dict's) in the order the random picks among them see."""
        return list(keys)

    def pick(self, keys):
        """One of keys (a dict's), at random."""
        return self.rng.choice(self.ordered(keys))

    def domain_label(self, domain):
        """A domain as the op log names it."""
        return domain

    def posthoc(self, kind, rid, d, why):
        with self.oracle.lock:
            self.oracle.posthoc.append((kind, rid, d, why))

    def unexpected(self, err, domain, why):
        """An error a call by (or for) domain should not have answered."""
        self.bad("unexpected", why)

    def released(self, rid, res):
        """A release that the daemon acknowledged."""

    def revoke_candidates(self):
        """Under the world's lock: the owned regions a revoke may pick."""
        return [r for r, o in self.world.owned.items() if not o["revoked"] or self.rng.random() < 0.25]

    def nothing_to_revoke(self, fallback):
        return self.op_share()

    ADMIN_REVOKE_SHARE = 0.2
    RELOAD_WEIGHTS = [45, 35, 20]  # p0, p1, bad
    SIGHUP_OUTCOME = "ok"  # what a reload by SIGHUP, which answers nothing, counts as

    def lookup_target(self):
        """(device, domain) of a route.lookup."""
        return self.rng.choice([("nic0", "vm1"), ("nic0", "vm2"), ("gpu0", "vm1"), ("gpu0", "vm2")])

    # -- ops

    def op_attach(self):
        w = self.world
        with w.lock:
            if not w.grants:
                return self.op_share()
            key = self.pick(w.grants)
            g = w.grants.pop(key)
        rid, d = key
        self.doubt("attach", key)
        res, err = self.call(self.conn, "region.attach", {"domain": d, "token": g["token"]})
        self.inflight = None
        if err:
            self.log("attach region %d %s -> %s" % (rid, self.domain_label(d), err))
            self.run_.count("attach:" + err)
            why = "attach of region %d by %s with its acknowledged token answered %s" % (rid, d, err)
            ph = {"token_used": "peer_not_granted", "invalid_token": "reclaimed", "invalid_state": "not_live"}.get(err)
            if ph:
                self.posthoc(ph, rid, d, why)
            else:
                self.unexpected(err, d, why)
            return
        self.attached(key, g, res)

    def attached(self, key, g, res):
        """The attach of grant g (key (region, domain)) answered res."""
        w = self.world
        rid, d = key
        fd = self.conn.take_fd()
        self.conn.drop_fds()
        with self.oracle.lock:
            self.oracle.attached.add((rid, d))
        self.log("attach region %d %s -> ok %s" % (rid, d, res["access"]))
        self.run_.count("attach:ok")
        if res["region"] != rid or res["access"] != g["access"] or res["size"] != g["size"]:
            self.bad("reply", "attach of region %d by %s: reply %s, share said %s" % (rid, d, res, g))
        present = self.check_fd(fd, rid, g["pool"], g["size"], g["access"], "%s's fd" % d)
        sig = w.sigs.get(rid)
        got = os.pread(fd, len(sig), 0) if sig else None
        if sig and got != sig:
            if got == bytes(len(sig)):
                # Only a reclaim scrubs (before it commits): a revoke from another agent may have
                # run meanwhile, and the daemon may have died before the reclaim's commit.
                self.posthoc("not_live", rid, None, "%s attached region %d and read zeros, not the owner's "
                             "signature" % (d, rid))
            else:
                self.bad("backend", "%s attached region %d and reads %r, not the owner's %r" % (d, rid, got, sig))
        elif not present:
            self.posthoc("not_live", rid, None, "region %d's file was gone right after %s attached" % (rid, d))
        with w.lock:
            w.hold((rid, d), Held(fd, g["pool"], g["size"], self.epoch))
            w.attachments[key] = dict(pool=g["pool"], size=g["size"])

    def op_release(self):
        w = self.world
        with w.lock:
            pool = w.attachments if (w.attachments and (self.rng.random() < 0.85 or not w.grants)) else w.grants
            if not pool:
                return self.op_share()
            key = self.pick(pool)
            pool.pop(key)
        rid, d = key
        self.doubt("release", key)
        res, err = self.call(self.conn, "region.release", {"domain": d, "region": rid})
        self.inflight = None
        self.log("release region %d %s -> %s" % (rid, self.domain_label(d), err or res["state"]))
        self.run_.count("release:" + (err or "ok"))
        why = "release of region %d by %s answered %s" % (rid, d, err)
        with self.oracle.lock:
            if err == "invalid_state":
                self.oracle.posthoc.append(("peer_final", rid, d, why))
            elif err == "no_such_region":
                self.oracle.posthoc.append(("reclaimed", rid, d, why))
            elif err:
                self.bad("unexpected", why)
            else:
                self.oracle.released.add((rid, d))
                if res["state"] == "reclaimed":
                    self.oracle.reclaimed[rid] = "release by %s answered reclaimed" % d
        if not err:
            self.released(rid, res)

    def op_revoke(self, fallback=True):
        w, rng = self.world, self.rng
        with w.lock:
            cands = self.revoke_candidates()
            if not cands:
                return self.nothing_to_revoke(fallback)
            rid = rng.choice(cands)
            entry = w.owned.pop(rid)
        params = {"region": rid, "deadline_ms": rng.choice(DEADLINES_MS)}
        if rng.random() < 0.3:
            params["force"] = True
        by_admin = rng.random() < self.ADMIN_REVOKE_SHARE
        w.let_go(rid)
        self.doubt("revoke", rid)
        if by_admin:
            res, err = self.call(self.admin(), "admin.revoke", params)
        else:
            res, err = self.call(self.conn, "region.revoke", dict(params, owner=self.run_.owner_domain))
        self.inflight = None
        self.log("%s region %d %s -> %s" % ("admin.revoke" if by_admin else "revoke", rid, params,
                                           err or res["state"]))
        self.run_.count("revoke:" + (err or "ok"))
        if err == "no_such_region":
            self.posthoc("reclaimed", rid, None, "revoke of region %d answered no_such_region" % rid)
            return
        if err:
            self.bad("unexpected", "revoke of region %d %s answered %s" % (rid, params, err))
            return
        with self.oracle.lock:
            self.oracle.not_live[rid] = "revoke answered %s" % res["state"]
            if res["state"] == "reclaimed":
                self.oracle.reclaimed[rid] = "revoke answered reclaimed"
        if res["state"] not in ("revoking", "reclaimed"):
            self.bad("reply", "revoke of region %d answered state %s" % (rid, res["state"]))
        if res["state"] != "reclaimed":
            with w.lock:
                w.owned[rid] = dict(entry, revoked=True)

    def op_reload(self):
        w, rng = self.world, self.rng
        with w.policy_lock:
            which = rng.choices(["p0", "p1", "bad"], self.RELOAD_WEIGHTS)[0]
            via = rng.choice(["sighup", "admin.reload"])
            write_atomic(self.run_.daemon.d.policy_path, self.run_.policy_text(which))
            self.doubt("reload", which)
            if via == "sighup":
                try:
                    self.run_.daemon.proc.send_signal(signal.SIGHUP)
                except ProcessLookupError:
                    pass
                res, err = {"signal": "SIGHUP"}, None
            else:
                res, err = self.call(self.admin(), "admin.reload", {})
            self.inflight = None
            self.log("reload %s via %s -> %s" % (which, via, err or res))
            self.run_.count("reload:%s:%s" % (which, err or (self.SIGHUP_OUTCOME if via == "sighup" else "ok")))
            if via == "admin.reload" and (err is not None) != (which == "bad"):
                self.bad("unexpected", "admin.reload of policy %s answered %s" % (which, err or res))
            if which == "bad":
                time.sleep(0.05)  # let a SIGHUP read it
                write_atomic(self.run_.daemon.d.policy_path, self.run_.policy_text(w.good_policy))
            else:
                w.good_policy = which

    def op_read(self):
        w, rng = self.world, self.rng
        with self.oracle.lock:
            gone = list(self.oracle.reclaimed)
        what = rng.choice(["get", "lookup", "list"])
        if what == "get":
            with w.lock:
                owned = self.ordered(w.owned)
            if gone and (not owned or rng.random() < 0.5):
                rid = rng.choice(gone)
                res, err = self.call(self.conn, "region.get", {"region": rid})
                self.log("get region %d (acknowledged reclaimed) -> %s" % (rid, err or res["state"]))
                if err != "no_such_region":
                    self.bad("reachable", "region %d was acknowledged reclaimed; region.get answered %s"
                             % (rid, err or res))
            elif owned:
                rid = rng.choice(owned)
                res, err = self.call(self.conn, "region.get", {"region": rid})
                self.log("get region %d -> %s" % (rid, err or res["state"]))
                if err == "no_such_region":
                    self.posthoc("reclaimed", rid, None, "region.get %d said no_such_region" % rid)
                elif err:
                    self.bad("unexpected", "region.get %d answered %s" % (rid, err))
        elif what == "lookup":
            dev, dom = self.lookup_target()
            res, err = self.call(self.conn, "route.lookup", {"device": dev, "domain": dom})
            self.log("route.lookup %s %s -> %s" % (dev, self.domain_label(dom), err or res))
            if err:
                self.bad("unexpected", "route.lookup answered %s" % err)
            elif res["route"] == "region" and res["region"] in gone:
                self.bad("reachable", "route %s/%s leads to region %d, acknowledged reclaimed"
                         % (dev, dom, res["region"]))
        else:
            res, err = self.call(self.conn, "region.list", {"domain": self.run_.owner_domain})
            if err:
                self.bad("unexpected", "region.list answered %s" % err)
                return
            self.log("region.list -> %d regions" % len(res["regions"]))
            gone = set(gone)
            for r in res["regions"]:
                if r["region"] in gone:
                    self.bad("reachable", "region.list shows region %d, acknowledged reclaimed" % r["region"])
        self.run_.count("read:" + what)


# ---------------------------------------------------------------------------------------------
# the run


class Run:
    """One run: the kill schedule, the daemon, the agents and every check. churn-libvirt.py
    subclasses it; NAME, CHECK_PHASE and the hooks below are where the two differ."""
    NAME = "churn"
    CHECK_PHASE = "check"  # what the daemon is doing when a crashpoint fires after the restart
    CONVERGE_PHASE = "live checks"  # the time from a restart to the checks passed
    STUCK_SLACK_USEC = STUCK_SLACK_USEC
    AGENT = Agent
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(args.seed)
        self.owner_domain, self.peer_domains = "hw0", ("vm1", "vm2")
        self.daemon = None
        self.oplog = None
        self.violations = Violations()
        self.world = World()
        self.oracle = Oracle()
        self.view = DBView()
        self.replay = Replay()
        self.stop = threading.Event()
        self.expect_death = threading.Event()
        self.counts = collections.Counter()
        self.count_lock = threading.Lock()
        self.cp_hits = collections.Counter()
        self.cp_tries = collections.Counter()
        self.kills = collections.Counter()
        self.checks = collections.Counter()
        self.phase_time = collections.Counter()
        self.retry_reasons = collections.Counter()
        self.findings = []
        self.fatal_wheres = []
        self.reported = set()
        self.baseline = None
        self._final_checked = set()
        self._daemon_memfds = {}
        self.epoch = 0
        self.mode = None
        names = set(CRASHPOINTS) | source_crashpoints()
        self.unknown_points = sorted(names - set(CRASHPOINTS))
        self.points = [p for p in CRASHPOINTS + self.unknown_points if p not in ASYNC_UNMAP_ONLY]
        self.cp_cycle = []

    def count(self, what):
        with self.count_lock:
            self.counts[what] += 1

    def bad(self, kind, text):
        self.violations.add(kind, text)

    # -- reporting

    def fail(self, items, where):
        out = sys.stdout
        print("\n%s: FAILED %s (epoch %d, %s)" % (self.NAME, where, self.epoch, self.mode), file=out)
        print("%s: seed %d; reproduce with: %s" % (self.NAME, self.seed, self.repro()), file=out)
        seen = set()
        for kind, text in items:
            if (kind, text) in seen:
                continue
            seen.add((kind, text))
            print("  [%s] %s" % (kind, text), file=out)
        if self.oplog:
            print("--- op log tail (%s) ---" % os.path.join(self.daemon.dir, "ops.log"), file=out)
            for line in list(self.oplog.tail)[-self.args.tail:]:
                print(line, file=out)
        if self.daemon:
            print("--- brokerd log tail (%s) ---" % self.daemon.d.log, file=out)
            print(self.daemon.log_tail(self.args.tail), file=out)
            print("%s: files kept in %s" % (self.NAME, self.daemon.dir), file=out)
        out.flush()

    def repro(self):
        a = self.args
        return ("%s %s --seed %d --kills %d --agents %d --max-delay %s --cp-timeout %s --max-n %d --final-seconds %s"
                % (sys.executable, os.path.abspath(__file__), self.seed, a.kills, a.agents, a.max_delay, a.cp_timeout,
                   a.max_n, a.final_seconds))

    def settle_violations(self, where):
        # A check retried while the daemon settles may see the same thing again: report it once.
        items = [it for it in dict.fromkeys(self.violations.take()) if it not in self.reported]
        self.reported.update(items)
        if not items:
            return
        self.findings.extend(items)
        self.fail(items, where)
        if not self.args.keep_going and any(kind not in self.expected_bugs() for kind, _ in items):
            self.fatal_wheres.append(where)
            raise Fatal(where)

    def expected_bugs(self):
        """The finding kinds --expect-bug names: reported, and the run goes on."""
        return self.args.expect_bug

    # -- the schedule

    STARTUP_SHARE, STARTUP_MAX_DELAY, RANDOM_MIN_DELAY = 0.15, 0.06, 0.02

    def next_mode(self):
        """cp_ratio of the kills are crashpoints, evenly spread, taking every reachable point in
        a shuffled cycle; of the others STARTUP_SHARE hit startup and recovery (within
        STARTUP_MAX_DELAY seconds), the rest the churn."""
        e, ratio = self.epoch, self.args.cp_ratio
        if int(e * ratio) > int((e - 1) * ratio):
            if not self.cp_cycle:
                self.cp_cycle = list(self.points)
                self.rng.shuffle(self.cp_cycle)
            return ("crashpoint", self.cp_cycle.pop(), self.rng.randint(1, self.args.max_n))
        if self.rng.random() < self.STARTUP_SHARE:
            return ("startup", self.rng.uniform(0.0, self.STARTUP_MAX_DELAY))
        return ("random", self.rng.uniform(self.RANDOM_MIN_DELAY, self.args.max_delay))

    # -- checks while the daemon is down

    def down_check(self):
        db = self.daemon.d.db
        if not os.path.exists(db):
            return
        snap = os.path.join(self.daemon.dir, "snap")
        shutil.rmtree(snap, ignore_errors=True)
        os.mkdir(snap)
        for ext in ("", "-wal"):
            if os.path.exists(db + ext):
                shutil.copyfile(db + ext, os.path.join(snap, "brokerd.db" + ext))
        con = sqlite3.connect(os.path.join(snap, "brokerd.db"), isolation_level=None)
        try:
            ic = con.execute("PRAGMA integrity_check").fetchall()
            if ic != [("ok",)]:
                self.bad("integrity", "PRAGMA integrity_check: %s" % ic[:10])
            fk = con.execute("PRAGMA foreign_key_check").fetchall()
            if fk:
                self.bad("integrity", "PRAGMA foreign_key_check: %s" % fk[:10])
            self.checks["integrity_check"] += 1
            if con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'regions'").fetchone()[0] == 0:
                return  # killed before the schema was created
            self.view.load(con, self.replay.last_seq, self.bad)
        finally:
            con.close()
        self.replay_audit()
        self.oracle.check(self.view, self.bad)
        self.down_backend_check()
        self.checks["down_snapshot"] += 1

    def scan_audit(self):
        """Hook: the audit rows since the last replay, before the replay moves past them."""

    def down_backend_check(self):
        """Hook: the backend's state against the database while the daemon is down (the
        memfd backend's dies with it; its files are checked after the restart)."""

    # -- checks after a restart (the daemon up, the agents idle)

    def replay_audit(self):
        """The audit trail since the last replay, fed into the view just loaded and compared."""
        self.scan_audit()
        self.replay.feed(self.view, self.bad)
        self.replay.compare(self.view, self.bad)

    def live_snapshot(self):
        # brokerd holds its file exclusively: a copy, taken with the agents idle.
        con = harness.db_snapshot(self.daemon.d.db)
        try:
            self.view.load(con, self.replay.last_seq, self.bad)
        finally:
            con.close()
        self.replay_audit()

    def live_check(self, final=False, conns=0):
        """Checks after a restart. Deterministic checks (on one database snapshot) fail at once;
        those that compare the database with the backend and the daemon's memory are retried,
        since a revoke deadline may be acting while we look. Returns False if the daemon died
        (a crashpoint on the deadline path)."""
        tries = 12

        def checks(soft):
            self.backend_check(soft, conns)
            self.memory_check(soft)
            self.held_check(soft)
        for attempt in range(tries):
            soft = self.check_attempt(final, "after restart", checks)
            if soft is None:
                return False  # died: a crashpoint on a deadline's path
            self.settle_violations("after restart: database against backend and daemon")
            if not soft:
                self.checks["live_check"] += 1
                return True
            if not self.daemon.alive():
                return False
            self.checks["live_check_retry"] += 1
            self.retry_reasons.update(kind for kind, _ in soft)
            if attempt == tries - 1:
                for kind, text in soft:
                    self.bad(kind, text)
                self.settle_violations("after restart: database against backend and daemon")
                return True
            time.sleep(0.25 + 0.1 * attempt)

    def check_attempt(self, final, where, checks):
        """One attempt of the live checks: the database against the acknowledgements and the
        audit trail (findings at once), then checks(soft), whose findings (in soft) may be
        transient. Returns soft, or None if the daemon died meanwhile."""
        soft = []
        try:
            self.live_snapshot()
            self.oracle.check(self.view, self.bad, final=final)
            self.settle_violations("%s: database against acknowledgements and audit trail" % where)
            checks(soft)
        except (ConnectionError, OSError, ValueError) as e:
            try:
                self.daemon.proc.wait(timeout=5)
                return None
            except subprocess.TimeoutExpired:
                soft.append(("disconnect", "checking connection failed: %r" % e))
        except harness.RpcError as e:
            self.bad("unexpected", "a checking request answered %s" % e)
        except AssertionError as e:
            self.bad("protocol", "a checking request: %s" % e)
        return soft

    def region_row_check(self, rid, r, peers, now, soft):
        """What a region row that is not final must hold, whatever the backend: settled once
        every peer is done, no revoke stuck past its deadline, a token for every peer."""
        if r["state"] in LIVE and peers and all(p["state"] in FINAL_PEER for p in peers.values()):
            soft.append(("settle", "region %d is %s though every peer is done: %s" % (rid, r["state"], peers)))
        if r["state"] == "revoking" and r["deadline"] < now - self.STUCK_SLACK_USEC:
            soft.append(("stuck", "region %d is revoking %.1fs past its deadline: peers %s, owner_mapped %d"
                         % (rid, (now - r["deadline"]) / 1e6, peers, r["owner_mapped"])))
        for dom, p in peers.items():
            if p["token"] is None or len(p["token"]) != 32:
                self.bad("token", "region %d peer %s (%s) has token %r" % (rid, dom, p["state"], p["token"]))

    def final_rows_check(self):
        """Reclaimed regions not checked yet: nothing mapped, no token, every peer final."""
        v = self.view
        for rid in v.final - self._final_checked:
            r = v.regions[rid]
            for dom, p in v.peers.get(rid, {}).items():
                if p["mapped"] or p["token"] is not None:
                    self.bad("token", "reclaimed region %d peer %s has mapped=%d token=%r" % (rid, dom, p["mapped"],
                                                                                           p["token"]))
                if p["state"] not in FINAL_PEER:
                    self.bad("db", "reclaimed region %d peer %s is %s" % (rid, dom, p["state"]))
            if r["owner_mapped"]:
                self.bad("db", "reclaimed region %d has owner_mapped=1" % rid)
        self._final_checked |= v.final

    def backend_check(self, soft, conns):
        """The shm pool directory and the daemon's fds against the database."""
        v = self.view
        d = self.daemon.d
        nonfinal = {r["id"]: r for r in v.nonfinal()}
        now = now_usec()
        for rid, r in nonfinal.items():
            peers = v.peers.get(rid, {})
            self.region_row_check(rid, r, peers, now, soft)
            for dom, p in peers.items():
                # memfd backend: unmaps complete at once, so only attached peers are mapped.
                if p["mapped"] != (p["state"] == "attached"):
                    soft.append(("mapped", "region %d peer %s is %s with mapped=%d" % (rid, dom, p["state"],
                                                                                      p["mapped"])))
            if r["state"] in LIVE and not r["owner_mapped"]:
                soft.append(("mapped", "live region %d has owner_mapped=0" % rid))
        self.final_rows_check()
        # Ranges: inside their pool, aligned, never two unreclaimed ones overlapping.
        pools = {p["name"]: p for p in harness.PLATFORM["pools"]}
        spans = sorted((r["pool"], r["base"], r["base"] + r["size"], rid) for rid, r in nonfinal.items())
        for a, b in zip(spans, spans[1:]):
            if a[0] == b[0] and b[1] < a[2]:
                self.bad("overlap", "regions %d [%#x, %#x) and %d [%#x, %#x) overlap in pool %s"
                         % (a[3], a[1], a[2], b[3], b[1], b[2], a[0]))
        for rid, r in nonfinal.items():
            p = pools.get(r["pool"])
            pb, ps = parse_size(p["base"]), parse_size(p["size"])
            g = parse_size(p["granule"])
            if r["base"] < pb or r["base"] + r["size"] > pb + ps or r["base"] % g or r["size"] % g:
                self.bad("overlap", "region %d [%#x, +%d) is not inside pool %s or not aligned to its granule"
                         % (rid, r["base"], r["size"], r["pool"]))

        # Pool directory: exactly one 0600 file of the right size per unreclaimed shm region.
        want = {rid: r for rid, r in nonfinal.items() if r["pool"] == SHM_POOL}
        files = {}
        for name in os.listdir(d.shm):
            m = re.fullmatch(r"brokerd-%s-(\d+)" % SHM_POOL, name)
            if not m:
                soft.append(("files", "stray file %s in the pool directory" % name))
                continue
            files[int(m.group(1))] = name
        for rid in sorted(set(files) - set(want)):
            st = v.regions.get(rid, {}).get("state")
            soft.append(("files", "pool file %s exists; region %d is %s" % (files[rid], rid, st)))
        for rid in sorted(set(want) - set(files)):
            soft.append(("files", "region %d is %s; its pool file is missing" % (rid, want[rid]["state"])))
        half_created = set()
        for rid in sorted(set(want) & set(files)):
            try:
                st = os.lstat(os.path.join(d.shm, files[rid]))
            except FileNotFoundError:
                soft.append(("files", "pool file %s vanished" % files[rid]))
                continue
            if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != 0o600 or st.st_uid != os.geteuid():
                self.bad("files", "pool file %s has mode %o uid %d" % (files[rid], st.st_mode, st.st_uid))
            if st.st_size == 0 and want[rid]["state"] in LIVE:
                # A kill between create_file()'s open(O_CREAT|O_EXCL) and its ftruncate().
                half_created.add(rid)
                self.bad("half-created", "region %d is %s with a 0-byte pool file %s (a share killed between "
                         "creating the file and sizing it) and the daemon %s; route.lookup can lead to it"
                         % (rid, want[rid]["state"], files[rid],
                            "holds no memory for it" if rid not in self.daemon_file_fds() else "holds it"))
            elif st.st_size != want[rid]["size"]:
                self.bad("files", "pool file %s is %d bytes; region %d is %d" % (files[rid], st.st_size, rid,
                                                                                want[rid]["size"]))
            sig = self.world.sigs.get(rid)
            if sig:
                with open(os.path.join(d.shm, files[rid]), "rb") as f:
                    got = f.read(len(sig))
                if got != sig:
                    soft.append(("data", "region %d (%s) lost its contents across restarts: %r, not %r"
                                 % (rid, want[rid]["state"], got, sig)))

        # The daemon's fds: one master fd per region it holds memory for; nothing for others.
        fds = self.daemon.fds()
        held_files, held_memfds, other, pidfds, eventfds = collections.Counter(), collections.Counter(), 0, 0, 0
        for fd, link in fds.items():
            if link == "anon_inode:[pidfd]":
                pidfds += 1  # one per holder process of a mapping it handed out
                continue
            if link == "anon_inode:[eventfd]":
                eventfds += 1  # doorbells: one per ordered pair of parties and vector
                continue
            m = re.fullmatch(re.escape(d.shm) + r"/brokerd-%s-(\d+)( \(deleted\))?" % SHM_POOL, link)
            if m:
                if m.group(2):
                    soft.append(("leak", "the daemon holds fd %d on a deleted region file %s" % (fd, link)))
                held_files[int(m.group(1))] += 1
                continue
            m = re.fullmatch(r"/memfd:brokerd:%s:(\d+)( \(deleted\))?" % MEMFD_POOL, link)
            if m:
                held_memfds[int(m.group(1))] += 1
                continue
            if link.startswith("/memfd:"):
                soft.append(("leak", "the daemon holds an unknown memfd %s" % link))
            other += 1
        holders = sum(1 + len(v.peers.get(rid, {})) for rid in nonfinal)
        if pidfds > holders:
            soft.append(("leak", "the daemon holds %d pidfds for %d holders of regions not reclaimed" % (pidfds, holders)))
        # Doorbells (docs/protocol.md): P x (P - 1) x 2 per region (the churn's shares take the
        # default 2 vectors), P its parties: the owner and the peers attached.
        parties = {rid: 1 + sum(p.get("state") == "attached" for p in v.peers.get(rid, {}).values())
                   for rid in nonfinal}
        bells = sum(n * (n - 1) * 2 for n in parties.values())
        if eventfds > bells:
            soft.append(("leak", "the daemon holds %d eventfds; the parties of regions not reclaimed need %d"
                         % (eventfds, bells)))
        for rid, n in held_files.items():
            if n != 1 or rid not in want:
                soft.append(("leak", "the daemon holds %d fds on region %d's file; the region is %s"
                             % (n, rid, v.regions.get(rid, {}).get("state"))))
        for rid in set(want) - set(held_files) - half_created:
            soft.append(("backend", "the daemon holds no fd on region %d's file (%s)" % (rid, want[rid]["state"])))
        memwant = {rid: r for rid, r in nonfinal.items() if r["pool"] == MEMFD_POOL}
        for rid, n in held_memfds.items():
            if n != 1 or rid not in memwant:
                soft.append(("leak", "the daemon holds %d memfds of region %d; the region is %s"
                             % (n, rid, v.regions.get(rid, {}).get("state"))))
        for rid, r in memwant.items():
            if r["state"] in LIVE and rid not in held_memfds:
                soft.append(("backend", "live region %d (memfd pool) has no memfd in the daemon" % rid))
        if self.baseline is not None and other > self.baseline + conns + 2:
            soft.append(("leak", "the daemon has %d fds besides region memory; baseline %d, %d connections: %s"
                         % (other, self.baseline, conns, sorted(fds.values()))))
        self._daemon_memfds = {}
        for fd, link in fds.items():
            m = re.fullmatch(r"/memfd:brokerd:%s:(\d+).*" % MEMFD_POOL, link)
            if m:
                self._daemon_memfds[int(m.group(1))] = fd

    def daemon_file_fds(self):
        ids = set()
        for link in self.daemon.fds().values():
            m = re.fullmatch(re.escape(self.daemon.d.shm) + r"/brokerd-%s-(\d+)" % SHM_POOL, link)
            if m:
                ids.add(int(m.group(1)))
        return ids

    def memory_check(self, soft):
        """The daemon's in-memory view (admin socket) against the database; returns region.list."""
        v = self.view
        c = Conn(self.daemon.d.admin_socket, self.args.reply_timeout, self.args.validate)
        try:
            nonfinal = {r["id"]: r for r in v.nonfinal()}
            listed = {r["region"]: r for r in c.call("region.list", {})["regions"]}
            for rid in set(listed) | set(nonfinal):
                a, b = listed.get(rid), nonfinal.get(rid)
                if a is None:
                    soft.append(("memory", "region %d is %s in the database but not in the daemon" % (rid, b["state"])))
                    continue
                if b is None:
                    st = v.regions.get(rid, {}).get("state")
                    if st == "reclaimed":
                        self.bad("reachable", "the daemon lists region %d, which the database has reclaimed" % rid)
                    else:
                        soft.append(("memory", "the daemon lists region %d, the database has %s" % (rid, st)))
                    continue
                if a["state"] != b["state"] or bool(a["owner_mapped"]) != bool(b["owner_mapped"]) or \
                        int(a["base"], 16) != b["base"] or a["size"] != b["size"]:
                    soft.append(("memory", "region %d: daemon %s/%s/%s+%d, database %s/%s/%#x+%d" % (
                        rid, a["state"], a["owner_mapped"], a["base"], a["size"], b["state"], b["owner_mapped"],
                        b["base"], b["size"])))
                dbp = v.peers.get(rid, {})
                for p in a["peers"]:
                    q = dbp.get(p["domain"])
                    if q is None or q["state"] != p["state"] or bool(q["mapped"]) != bool(p["mapped"]):
                        soft.append(("memory", "region %d peer %s: daemon %s mapped=%s, database %s" % (
                            rid, p["domain"], p["state"], p["mapped"], q)))
            # Reclaimed ranges are not reachable: region.get on the latest reclaimed regions.
            recent = sorted(v.final)[-40:]
            with self.oracle.lock:
                recent += list(self.oracle.reclaimed)[-40:]
            for rid in set(recent):
                try:
                    r = c.call("region.get", {"region": rid})
                    self.bad("reachable", "region %d is reclaimed; region.get answers %s" % (rid, r["state"]))
                except harness.RpcError as e:
                    if e.name != "no_such_region":
                        self.bad("reachable", "region.get of reclaimed region %d answered %s" % (rid, e.name))
            # Routes lead to the newest live region with that peer still in it.
            self.route_check(c, nonfinal, soft)
            # Quota usage and pool accounting rebuilt from the database.
            doms = {x["domain"]: x for x in c.call("admin.domains", {})["domains"]}
            owner = self.owner_domain
            own = [r for r in nonfinal.values() if r["owner"] == owner]
            counted = doms.get(owner, {"regions_owned": 0, "bytes_owned": 0})
            if (counted["regions_owned"], counted["bytes_owned"]) != (len(own), sum(r["size"] for r in own)):
                soft.append(("memory", "%s owns %d regions, %d bytes by the daemon's count; the database says %d, %d"
                             % (owner, counted["regions_owned"], counted["bytes_owned"], len(own),
                                sum(r["size"] for r in own))))
            for dom in self.peer_domains:
                att = sum(1 for rid in nonfinal if dbp_state(v, rid, dom) == "attached")
                if doms.get(dom, {}).get("attached", 0) != att:
                    soft.append(("memory", "%s: daemon counts %s attached, database %d" % (dom, doms.get(dom), att)))
            for p in c.call("admin.pools", {})["pools"]:
                rs = [r for r in nonfinal.values() if r["pool"] == p["pool"]]
                if (p["regions"], p["used"]) != (len(rs), sum(r["size"] for r in rs)):
                    soft.append(("memory", "pool %s: daemon %d regions %d bytes, database %d, %d" % (
                        p["pool"], p["regions"], p["used"], len(rs), sum(r["size"] for r in rs))))
            return listed
        finally:
            c.close()

    def route_check(self, c, nonfinal, soft):
        """Routes lead to the newest live region with that peer still in it; with none, to the
        bounce last answered on that route (or nowhere)."""
        v = self.view
        for dev, dom in ROUTES:
            r = c.call("route.lookup", {"device": dev, "domain": dom})
            cands = [rid for rid, reg in nonfinal.items() if reg["device"] == dev and reg["state"] in LIVE
                     and dbp_state(v, rid, dom) not in (None,) + FINAL_PEER]
            want = max(cands) if cands else None
            got = r.get("region") if r["route"] == "region" else None
            if got != want:
                soft.append(("route", "route %s/%s leads to %s; the newest live region for it is %s"
                             % (dev, dom, r, want)))
                continue
            with self.oracle.lock:
                e = self.oracle.route_expect[(dev, dom)]
            if want is not None or e is None:
                continue
            if e[0] == "bounce" and r != {"route": "bounce", "reason": e[1]}:
                # Stable while the agents are idle: no deadline changes a bounce.
                self.bad("route-bounce", "route %s/%s: the last share on it was answered "
                         "{placement: bounce, reason: %r} and no region serves it now, but route.lookup "
                         "answers %s" % (dev, dom, e[1], r))
            elif e[0] == "none" and r != {"route": "none"}:
                self.bad("route", "route %s/%s: the last share on it placed a region (no bounce since); "
                         "route.lookup answers %s" % (dev, dom, r))
            else:
                continue
            with self.oracle.lock:
                self.oracle.route_expect[(dev, dom)] = None  # reported once

    def held_check(self, soft):
        """The fds the agents received: the pool file's inode while the region lives, zeros after."""
        v = self.view
        memfds = getattr(self, "_daemon_memfds", {})
        with self.world.lock:
            items = list(self.world.held.items())
        for (rid, who), h in items:
            r = v.regions.get(rid)
            if r is None:
                continue
            st = os.fstat(h.fd)
            if r["state"] != "reclaimed":
                if h.pool == SHM_POOL:
                    try:
                        fst = os.stat(os.path.join(self.daemon.d.shm, "brokerd-%s-%d" % (h.pool, rid)))
                    except FileNotFoundError:
                        continue  # reported by the directory check
                    if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                        soft.append(("backend", "%s's fd of region %d is no longer the pool file" % (who, rid)))
                elif rid in memfds:
                    try:
                        dst = os.stat("/proc/%d/fd/%d" % (self.daemon.pid, memfds[rid]))
                        if (dst.st_dev, dst.st_ino) != (st.st_dev, st.st_ino):
                            soft.append(("backend", "%s's memfd of region %d is not the daemon's" % (who, rid)))
                    except FileNotFoundError:
                        pass
                continue
            # Reclaimed: a file pool's memory was scrubbed and unlinked; nothing reaches it.
            if h.pool == SHM_POOL:
                if st.st_nlink != 0:
                    soft.append(("reachable", "region %d is reclaimed; the file %s's fd refers to is still linked"
                                 % (rid, who)))
                for off in sorted({0, max(0, h.size - 4096)}):
                    if os.pread(h.fd, 4096, off) != bytes(4096):
                        self.bad("scrub", "region %d is reclaimed; %s still reads data at offset %d" % (rid, who, off))

    def close_reclaimed_fds(self):
        with self.world.lock:
            for key in [k for k in self.world.held if self.view.regions.get(k[0], {}).get("state") == "reclaimed"]:
                os.close(self.world.held.pop(key).fd)
                self.world.sigs.pop(key[0], None)

    # -- in-doubt requests, resolved against the database

    def resolve_in_doubt(self):
        v = self.view
        with self.world.lock:
            items, self.world.in_doubt = self.world.in_doubt, []
        for kind, detail in items:
            if kind == "share":
                outcome = "committed" if detail in v.by_label else "not committed"
            elif kind in ("attach", "release"):
                rid, d = detail
                st = v.peers.get(rid, {}).get(d, {}).get("state")
                outcome = st or "?"
            elif kind == "revoke":
                outcome = v.regions.get(detail, {}).get("state", "?")
            else:
                outcome = "-"
            self.counts["in-doubt:%s:%s" % (kind, outcome)] += 1
            self.oplog.add("main", "in doubt: %s %s -> %s" % (kind, detail, outcome))

    # -- fd baseline

    def is_region_fd(self, link):
        # A pidfd is the daemon's record of a process holding a mapping: it goes with the region.
        return (link.startswith(self.daemon.d.shm + "/") or link.startswith("/memfd:")
                or link == "anon_inode:[pidfd]")

    def settled_fds(self):
        deadline = time.monotonic() + 10
        last = None
        while True:
            fds = self.daemon.fds()
            other = sum(1 for link in fds.values() if not self.is_region_fd(link))
            if other == last or time.monotonic() > deadline:
                return other, fds
            last = other
            time.sleep(0.2)

    # -- main loop

    def timed(self, phase, fn, *args, **kw):
        t = time.monotonic()
        try:
            return fn(*args, **kw)
        finally:
            self.phase_time[phase] += time.monotonic() - t

    def start_epoch_daemon(self, env):
        self.daemon.spawn(env)
        return self.timed("start", self.daemon.wait_ready)

    def new_daemon(self):
        return Brokerd()

    def run(self):
        a = self.args
        self.daemon = self.new_daemon()
        self.oplog = OpLog(os.path.join(self.daemon.dir, "ops.log"))
        t0 = time.monotonic()
        print("churn: seed %d, %d kills, %d agents, brokerd %s, files in %s" % (
            self.seed, a.kills, a.agents, harness.BROKERD, self.daemon.dir), flush=True)
        if self.unknown_points:
            print("churn: crashpoints in the source not in this driver's list (scheduled too): %s"
                  % self.unknown_points)
        try:
            # Epoch 0: the fd baseline of a fresh daemon with no connections.
            self.mode = "baseline"
            if not self.start_epoch_daemon({}):
                raise Fatal("brokerd did not start:\n" + self.daemon.log_tail())
            self.baseline, _ = self.settled_fds()
            self.live_check()
            if a.probe:
                self.bounce_probe()
            self.daemon.kill()
            self.kills["scripted"] += 1
            self.after_kill()

            for self.epoch in range(1, a.kills + 1):
                self.one_epoch()
                if a.progress and self.epoch % a.progress == 0:
                    print("churn: %d/%d kills, %d ops, %.0fs" % (self.epoch, a.kills, self.oplog.count,
                                                                 time.monotonic() - t0), flush=True)
            self.epoch += 1
            self.final_phase()
        except Fatal as e:
            if str(e) and not any(str(e) == w for w in self.fatal_wheres):
                self.findings.append(("fatal", str(e)))
                self.fail([("fatal", str(e))], "run")
            self.summary(time.monotonic() - t0, failed=True)
            return self.exit_status()
        except Exception:
            self.findings.append(("driver", traceback.format_exc()))
            self.fail(self.findings[-1:], "run")
            self.summary(time.monotonic() - t0, failed=True)
            return 99 if self.args.expect_bug else 1
        finally:
            self.stop.set()
            if self.daemon and self.daemon.alive():
                self.daemon.kill()
        self.summary(time.monotonic() - t0, failed=bool(self.findings))
        if self.findings:
            return self.exit_status()
        if not a.keep:
            self.oplog.close()
            with self.world.lock:
                for h in self.world.held.values():
                    os.close(h.fd)
            shutil.rmtree(self.daemon.dir, ignore_errors=True)
        return 0

    # Hooks of one epoch and of the final phase (churn-libvirt.py: libvirtd, the guests).

    def before_start(self, where):
        """Before the daemon starts again."""

    def policy_text(self, which):
        """The policy file p0, p1 or bad."""
        return POLICIES[which]

    def write_good_policy(self):
        write_atomic(self.daemon.d.policy_path, self.policy_text(self.world.good_policy))

    def start_failed(self):
        """The daemon exited while it started, not by a crashpoint."""

    def after_converged(self):
        """The restarted daemon passed its live checks; the agents have not started."""

    def disturbance(self, mode):
        """(what, seconds into the churn) to do to the world besides the kill, or None."""
        return None

    def disturb(self, what):
        raise NotImplementedError(what)

    def after_churn(self):
        """The agents have stopped."""

    def resume_world(self):
        self.after_converged()
        self.world.rebuild(self.view, self.oracle)
        self.resolve_in_doubt()
        self.close_reclaimed_fds()

    def start_agents(self):
        self.stop.clear()
        self.expect_death.clear()
        agents = [self.AGENT(self, i, self.epoch, subscribe=(i == 0)) for i in range(self.args.agents)]
        for ag in agents:
            ag.start()
        return agents

    def stop_agents(self, agents, report=True):
        self.stop.set()
        for ag in agents:
            ag.join(timeout=self.args.reply_timeout + 10)
            if report and ag.is_alive():
                self.bad("driver", "agent %d did not stop" % ag.idx)
        self.counts["ops"] += sum(ag.ops for ag in agents)
        self.after_churn()

    def one_epoch(self):
        a = self.args
        mode = self.next_mode()
        self.mode = mode
        self.before_start("before a start")
        self.write_good_policy()
        self.oplog.add("main", "epoch %d: %s" % (self.epoch, mode))
        if mode[0] == "startup":
            self.daemon.spawn({})
            time.sleep(mode[1])
            rc = self.daemon.kill()
            self.kills["startup"] += 1
            self.oplog.add("main", "killed %.3fs after start (rc %s)" % (mode[1], rc))
            self.after_kill()
            return
        env = {"BROKERD_CRASHPOINT": "%s:%d" % (mode[1], mode[2])} if mode[0] == "crashpoint" else {}
        if mode[0] == "crashpoint":
            self.cp_tries[mode[1]] += 1
        if not self.start_epoch_daemon(env):
            rc = self.daemon.wait()
            if rc == -signal.SIGKILL and mode[0] == "crashpoint":
                self.cp_hits[mode[1]] += 1
                self.kills["crashpoint@recovery"] += 1
                self.oplog.add("main", "crashpoint %s:%d fired during recovery" % (mode[1], mode[2]))
                self.after_kill()
                return
            self.start_failed()
            raise Fatal("brokerd exited with %s while starting (%s):\n%s" % (rc, mode, self.daemon.log_tail()))
        if not self.timed(self.CONVERGE_PHASE, self.live_check):
            self.died_unkilled(mode)
            return
        self.resume_world()
        stop = self.disturbance(mode)

        t_churn = time.monotonic()
        agents = self.start_agents()
        if mode[0] == "random":
            if stop:
                time.sleep(stop[1])
                self.disturb(stop[0])
            time.sleep(max(0.0, mode[1] - (stop[1] if stop else 0.0)))
            self.expect_death.set()
            rc = self.daemon.kill()
            self.kills["random"] += 1
            self.oplog.add("main", "killed after %.3fs (rc %s)" % (mode[1], rc))
        else:
            rc, timeout = None, a.cp_timeout
            if stop:
                try:
                    rc = self.daemon.proc.wait(timeout=stop[1])
                except subprocess.TimeoutExpired:
                    self.disturb(stop[0])
                timeout = max(0.1, a.cp_timeout - stop[1])
            if rc is None:
                try:
                    rc = self.daemon.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    rc = None
            self.expect_death.set()
            if rc is None:
                rc = self.daemon.kill()
                self.kills["crashpoint-missed"] += 1
                self.oplog.add("main", "crashpoint %s:%d not reached in %ss; killed" % (mode[1], mode[2],
                                                                                       a.cp_timeout))
            elif rc == -signal.SIGKILL:
                self.cp_hits[mode[1]] += 1
                self.kills["crashpoint"] += 1
                self.oplog.add("main", "crashpoint %s:%d fired" % (mode[1], mode[2]))
            else:
                self.bad("crash", "brokerd exited with %s (%s)" % (rc, mode))
        self.stop_agents(agents)
        self.phase_time["churn"] += time.monotonic() - t_churn
        self.after_kill()

    def died_unkilled(self, mode):
        rc = self.daemon.wait()
        if rc == -signal.SIGKILL and mode[0] == "crashpoint":
            self.cp_hits[mode[1]] += 1
            self.kills["crashpoint@" + self.CHECK_PHASE] += 1
            self.oplog.add("main", "crashpoint %s:%d fired during the %s" % (mode[1], mode[2], self.CHECK_PHASE))
            self.after_kill()
            return
        self.on_daemon_death("brokerd died")
        raise Fatal("brokerd died (rc %s) while being checked (%s):\n%s" % (rc, mode, self.daemon.log_tail()))

    def on_daemon_death(self, what):
        """Hook: the daemon died by itself; what else to look at before giving up."""

    def bounce_probe(self):
        """Scripted: a bounce answered while a live region serves the route, then a kill (the
        region is in the memfd pool, so the restart takes it down): once no region serves the
        route, route.lookup must still give the bounce. Random churn meets this case too."""
        c = Conn(self.daemon.d.agent_socket, self.args.reply_timeout, self.args.validate)
        try:
            peers = [{"domain": "vm2", "access": "ro"}]
            params = {"owner": "hw0", "device": "gpu0", "numa_node": 1, "size": 2 * MiB, "peers": peers,
                      "label": "churn:0:probe:1"}
            small = c.call("region.share", params)
            fd = c.take_fd()
            rid = small["region"]
            with self.oracle.lock:
                self.oracle.shares[rid] = dict(base=int(small["base"], 16), size=small["size"], pool=small["pool"],
                                               device="gpu0", label=params["label"],
                                               peers={"vm2": ("ro", small["tokens"][0]["token"])})
            self.world.hold((rid, "hw0"), Held(fd, small["pool"], small["size"], 0))
            big = c.call("region.share", dict(params, size=64 * MiB, label="churn:0:probe:2"))
            route = c.call("route.lookup", {"device": "gpu0", "domain": "vm2"})
            self.oplog.add("main", "probe: share %s -> region %d; share 64MiB -> %s; route.lookup -> %s"
                           % (params, rid, big, route))
            if big.get("placement") != "bounce" or route.get("region") != rid:
                raise Fatal("the bounce probe did not go as scripted: %s, %s" % (big, route))
            with self.oracle.lock:
                self.oracle.route_expect[("gpu0", "vm2")] = ("bounce", big["reason"])
        finally:
            c.close()

    def after_kill(self):
        log = self.daemon.log_tail(200)
        for marker in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
            if marker in log:
                self.bad("sanitizer", "brokerd's log has %r" % marker)
        self.timed("down checks", self.down_check)
        self.settle_violations("after a kill: database against acknowledgements")

    def final_phase(self):
        a = self.args
        self.mode = ("final",)
        self.before_start("final phase")
        self.write_good_policy()
        self.oplog.add("main", "final phase")
        if not self.start_epoch_daemon({}):
            raise Fatal("brokerd did not start for the final phase:\n" + self.daemon.log_tail())
        self.final_live_check("final phase", final=False)
        self.resume_world()
        # Churn without kills, so a leak over one daemon's lifetime shows.
        agents = self.start_agents()
        time.sleep(a.final_seconds)
        self.stop_agents(agents, report=False)
        # Recalls that came after the agents stopped: let go, as they would have.
        self.live_snapshot()
        for rid in [r["id"] for r in self.view.nonfinal() if r["state"] not in LIVE]:
            self.world.let_go(rid)
        time.sleep(3)  # brokerd looks again at a pending removal every 2s
        self.settle_violations("final churn")
        self.final_live_check("after the final churn")
        self.revoke_everything()
        self.await_nothing_left()
        self.final_live_check("after revoking everything")
        self.close_reclaimed_fds()
        self.final_fd_check()
        self.daemon.proc.send_signal(signal.SIGTERM)
        rc = self.daemon.wait()
        if rc != 0:
            self.bad("crash", "brokerd exited %s on SIGTERM" % rc)
        self.after_kill()
        self.oracle.check(self.view, self.bad, final=True)
        self.settle_violations("final checks")

    def final_live_check(self, what, final=True):
        """The live checks at a step (what) of the final phase."""
        if not self.live_check(final=final):
            raise Fatal("brokerd died in the final phase")

    def revoke_everything(self):
        """Revokes every region, forcibly, as the admin."""
        a = self.args
        c = Conn(self.daemon.d.admin_socket, a.reply_timeout, a.validate)
        for r in c.call("region.list", {})["regions"]:
            self.world.let_go(r["region"])
            try:
                res = c.call("admin.revoke", {"region": r["region"], "force": True, "deadline_ms": 0})
                self.oplog.add("main", "final admin.revoke %d -> %s" % (r["region"], res["state"]))
            except harness.RpcError as e:
                if e.name != "no_such_region":
                    self.bad("unexpected", "final admin.revoke of %d answered %s" % (r["region"], e.name))
        c.close()

    def await_nothing_left(self):
        """After revoke_everything(): every region reclaimed within 30s."""
        deadline = time.monotonic() + 30
        while True:
            self.live_snapshot()
            left = self.view.nonfinal()
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for r in left:
            self.bad("leak", "region %d is still %s after a forced revoke of everything" % (r["id"], r["state"]))

    REGION_FDS = "region memory"  # what the daemon's fds on regions are

    def final_file_check(self):
        left_files = os.listdir(self.daemon.d.shm)
        if left_files:
            self.bad("leak", "files left in the pool directory: %s" % left_files)

    def final_fd_check(self):
        """Nothing left: no pool files, no region fds or memfds, fds back at the baseline."""
        self.final_file_check()
        other, fds = self.settled_fds()
        region_fds = [link for link in fds.values() if self.is_region_fd(link)]
        if region_fds:
            self.bad("leak", "the daemon still holds %s: %s" % (self.REGION_FDS, region_fds))
        if self.baseline is not None and other > self.baseline + 1:
            self.bad("leak", "the daemon has %d fds, %d at its first start: %s" % (other, self.baseline,
                                                                                  sorted(fds.values())))
        self.final_fds = (other, self.baseline)

    def exit_status(self):
        """1 when there are findings. With --expect-bug (a known brokerd bug that makes meson's
        should_fail test fail as expected): 1 if every finding is of those kinds, 99 (meson:
        ERROR, never an expected failure) if any other is, 0 if none."""
        if not self.findings:
            return 0
        if not self.args.expect_bug:
            return 1
        others = sorted({kind for kind, _ in self.findings if kind not in self.args.expect_bug})
        if others:
            print("churn: findings beyond the expected bug (%s): %s" % (", ".join(self.args.expect_bug),
                                                                       ", ".join(others)))
            return 99
        print("churn: only the expected bug was found (%s)" % ", ".join(self.args.expect_bug))
        return 1

    def summary(self, elapsed, failed):
        ops = self.counts.get("ops", 0)
        kills = sum(self.kills.values())
        lines = ["churn: %s: seed %d, %d kills (%s), %d ops, %.1fs" % (
            "FAILED" if failed else "ok", self.seed, kills,
            ", ".join("%s %d" % kv for kv in sorted(self.kills.items())), ops, elapsed)]
        lines.append("churn: checks: %s; audit rows replayed %d; regions %d (%d reclaimed); acknowledged shares "
                     "settled %d" % (", ".join("%s %d" % kv for kv in sorted(self.checks.items())),
                                      self.replay.rows, len(self.view.regions), len(self.view.final),
                                      self.oracle.retired + len(self.oracle.shares)))
        if self.retry_reasons:
            lines.append("churn: live checks retried for (transient): %s" % dict(self.retry_reasons))
        lines.append("churn: time: %s" % ", ".join("%s %.1fs" % kv for kv in sorted(self.phase_time.items())))
        cps = ["%s %d/%d" % (p, self.cp_hits[p], self.cp_tries[p]) for p in self.points]
        lines.append("churn: crashpoints fired/tried: %s" % ", ".join(cps))
        lines.append("churn: not reachable with the memfd backend: %s" % ", ".join(sorted(ASYNC_UNMAP_ONLY)))
        never = [p for p in self.points if not self.cp_hits[p]]
        if never and not failed:
            lines.append("churn: warning: crashpoints that never fired: %s (more kills, a longer --cp-timeout)"
                         % ", ".join(never))
        lines.append("churn: outcomes: %s" % ", ".join("%s %d" % kv for kv in sorted(self.counts.items())
                                                     if kv[0] != "ops"))
        if hasattr(self, "final_fds"):
            lines.append("churn: final fds besides region memory %d (baseline %d)" % self.final_fds)
        if self.findings:
            lines.append("churn: %d findings (seed %d)" % (len(self.findings), self.seed))
        print("\n".join(lines), flush=True)
        self.write_summary_json(elapsed, failed)

    def write_summary_json(self, elapsed, failed, **more):
        """--summary-json: the run's figures, and more."""
        if not self.args.summary_json:
            return
        with open(self.args.summary_json, "w") as f:
            json.dump(dict(seed=self.seed, kills=dict(self.kills), ops=self.counts.get("ops", 0),
                           seconds=round(elapsed, 1),
                           crashpoints={p: [self.cp_hits[p], self.cp_tries[p]] for p in self.points},
                           counts=dict(self.counts), checks=dict(self.checks), audit_rows=self.replay.rows,
                           phase_seconds={k: round(v, 1) for k, v in self.phase_time.items()},
                           regions=len(self.view.regions), findings=self.findings, failed=failed, **more), f, indent=1)


def dbp_state(view, rid, dom):
    return view.peers.get(rid, {}).get(dom, {}).get("state")


def parse_size(v):
    if isinstance(v, int):
        return v
    m = re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)\s*([KMGT]iB)?", v)
    n = int(m.group(1), 0)
    return n * {None: 1, "KiB": KiB, "MiB": MiB, "GiB": 1024 * MiB, "TiB": 1024 * 1024 * MiB}[m.group(2)]


def add_arguments(p, agents, max_n, final_seconds):
    """The options churn.py and churn-libvirt.py share; the defaults that differ are given."""
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--agents", type=int, default=agents, help="agent connections (threads)")
    p.add_argument("--cp-ratio", type=float, default=0.5, help="share of kills by crashpoint")
    p.add_argument("--max-n", type=int, default=max_n, help="crashpoints fire at a random passage 1..N")
    p.add_argument("--max-delay", type=float, default=1.5, help="random kills: at most this many seconds of churn")
    p.add_argument("--cp-timeout", type=float, default=6.0, help="seconds to wait for a crashpoint before a SIGKILL")
    p.add_argument("--final-seconds", type=float, default=final_seconds,
                   help="churn without kills before the final checks")
    p.add_argument("--reply-timeout", type=int, default=60)
    p.add_argument("--no-validate", dest="validate", action="store_false",
                   help="do not validate replies against schemas/rpc")
    p.add_argument("--brokerd", help="the brokerd binary (default $BROKERD_BIN)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (always kept on failure)")
    p.add_argument("--keep-going", action="store_true", help="report findings and go on")
    p.add_argument("--tail", type=int, default=60, help="op log and daemon log lines printed on failure")
    p.add_argument("--progress", type=int, default=0, help="print progress every N kills")
    p.add_argument("--summary-json")


def parse_arguments(p, ci_defaults):
    """The arguments, with --ci's defaults where an option was not given explicitly."""
    args = p.parse_args()
    if args.ci:
        for k, v in ci_defaults.items():
            if getattr(args, k) == p.get_default(k):
                setattr(args, k, v)
    return args


def use_brokerd(args, name):
    """--brokerd, else $BROKERD_BIN; 0, or 2 (reported) if it is not there."""
    if args.brokerd:
        harness.BROKERD = args.brokerd
    if not os.access(harness.BROKERD, os.X_OK):
        print("%s: no brokerd at %s (set BROKERD_BIN or --brokerd)" % (name, harness.BROKERD), file=sys.stderr)
        return 2
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p, agents=4, max_n=6, final_seconds=10.0)
    p.add_argument("--expect-bug", action="append", default=[], metavar="KIND",
                   help="findings of this kind are a known brokerd bug: reported, the run goes on, exit 1 if "
                        "they are all there is, 99 if anything else was found (for meson's should_fail)")
    p.add_argument("--no-probe", dest="probe", action="store_false",
                   help="skip the scripted bounce-then-kill at the start")
    p.add_argument("--fdstore", action="store_true",
                   help="run brokerd under systemd's fd store (played by the driver): memfd regions survive kills")
    p.add_argument("--ci", action="store_true",
                   help="the short form: 30 kills, 3 agents, short epochs (unless given explicitly)")
    args = parse_arguments(p, dict(kills=30, agents=3, max_delay=0.4, cp_timeout=2.5, final_seconds=2.0, max_n=4))
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    if use_brokerd(args, "churn"):
        return 2
    if os.geteuid() != 0:
        print("churn: SKIP: needs root (the harness's policy gives uid 0 its domains)")
        return 77
    if args.fdstore:
        sys.modules.setdefault("churn", sys.modules[__name__])  # one copy of this module, not two
        import churn_fdstore  # noqa: E402 (its Run subclass, needed only here)
        return churn_fdstore.FdStoreRun(args).run()
    return Run(args).run()


if __name__ == "__main__":
    sys.exit(main())
