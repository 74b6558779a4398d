# SPDX-License-Identifier: Apache-2.0
"""churn.py --fdstore: the churn under systemd's file descriptor store (docs/crash-consistency.md,
"Under the fd store")."""
import os
import re

from churn import LIVE, MEMFD_POOL, Brokerd, Run


class FdStoreRun(Run):
    """--fdstore: the daemon runs under systemd's file descriptor store (tests/integration/
    fdstore.py plays the service manager), so memfd (gpu1) regions survive every kill like
    file-backed ones. Also checked: while the daemon is down, the store holds a memfd only for
    regions not reclaimed, one per name, one for every acknowledged live region, each with the
    owner's signature; after each restart the store's fds are exactly the daemon's memfds (the
    same memory), the memory still has its signature, and no acknowledged region is taken down
    because its memory did not survive; reclaimed memfd regions read zeros through the agents'
    fds; at the end the store is empty."""
    NAME = "churn-fdstore"

    def new_daemon(self):
        return Brokerd(with_store=True)

    def repro(self):
        return super().repro() + " --fdstore"

    def store_ids(self, where):
        """{region: store fd}; duplicate or foreign names are findings. Holders' pidfds
        (holder-<region>-<domain>) and doorbells (bell-<region>-<from>-<to>-<vector>) are no
        region's memory: checked at the end (the store empty)."""
        out = {}
        holders = set()
        for name, fd in self.daemon.store.entries_copy():
            m = re.fullmatch(r"region-(\d+)-%s" % MEMFD_POOL, name)
            if re.fullmatch(r"holder-\d+-([A-Za-z0-9.-]|_[ucp])+", name) or re.fullmatch(r"bell-\d+-\d+-\d+-[0-3]", name):
                if name in holders:
                    self.bad("fdstore", "%s: the store holds %s twice" % (where, name))
                holders.add(name)
            elif not m:
                self.bad("fdstore", "%s: the store holds an fd named %r" % (where, name))
            elif int(m.group(1)) in out:
                self.bad("fdstore", "%s: the store holds %s twice" % (where, name))
            else:
                out[int(m.group(1))] = fd
        return out

    def scan_audit(self):
        for (seq, actor, rid, domain, action, frm, to, reason) in self.view.audit_rows:
            if seq <= self.replay.last_seq or "did not survive" not in (reason or ""):
                continue
            self.counts["audit:memory-lost"] += 1
            if rid in self.oracle.shares:
                self.bad("fdstore", "audit seq %d: acknowledged region %d taken down: %s" % (seq, rid, reason))

    def down_backend_check(self):
        self.daemon.store.settle()
        with self.daemon.store.unparked():
            self.down_store_check()
        # The store keeps the holders' pidfds too: after the restart brokerd waits for the
        # agents (this process) on every region being revoked, as before the kill. A recall sent
        # just before the kill may not have reached them: they let go now, as an agent that
        # reconnects and finds its region revoking would.
        for r in self.view.nonfinal():
            if r["state"] not in LIVE:
                self.world.let_go(r["id"])

    def down_store_check(self):
        where = "daemon down"
        held = self.store_ids(where)
        nonfinal = {r["id"]: r for r in self.view.nonfinal()}
        for rid, fd in held.items():
            r = nonfinal.get(rid)
            if r is None or r["pool"] != MEMFD_POOL:
                self.bad("fdstore", "%s: the store holds region %d's memfd; the region is %s"
                         % (where, rid, self.view.regions.get(rid, {}).get("state", "unknown")))
                continue
            sig = self.world.sigs.get(rid)
            # A revoking region may be scrubbed already (a kill at reclaim-scrubbed).
            if sig and r["state"] in LIVE and os.pread(fd, len(sig), 0) != sig:
                self.bad("data", "%s: live region %d's memfd in the store lost the owner's signature"
                         % (where, rid))
        for rid, r in nonfinal.items():
            if r["pool"] == MEMFD_POOL and r["state"] in LIVE and rid in self.oracle.shares and rid not in held:
                self.bad("fdstore", "%s: acknowledged region %d is %s; its memfd is not in the store"
                         % (where, rid, r["state"]))
        self.checks["fdstore_down"] += 1

    def backend_check(self, soft, conns):
        super().backend_check(soft, conns)
        self.daemon.store.settle()
        with self.daemon.store.unparked():
            self.live_store_check(soft)

    def live_store_check(self, soft):
        held = self.store_ids("after restart")
        daemon = self._daemon_memfds
        if set(held) != set(daemon):
            soft.append(("fdstore", "the store holds memfds of regions %s, the daemon of %s"
                         % (sorted(held), sorted(daemon))))
        for rid in set(held) & set(daemon):
            try:
                dst = os.stat("/proc/%d/fd/%d" % (self.daemon.pid, daemon[rid]))
            except FileNotFoundError:
                continue
            st = os.fstat(held[rid])
            if (dst.st_dev, dst.st_ino) != (st.st_dev, st.st_ino):
                soft.append(("fdstore", "region %d: the store's memfd is not the daemon's" % rid))
            sig = self.world.sigs.get(rid)
            if sig and os.pread(held[rid], len(sig), 0) != sig and self.view.regions[rid]["state"] in LIVE:
                soft.append(("data", "live region %d (memfd pool) lost the owner's signature" % rid))
        self.checks["fdstore_live"] += 1

    def held_check(self, soft):
        super().held_check(soft)
        with self.world.lock:
            items = list(self.world.held.items())
        for (rid, who), h in items:
            if h.pool == MEMFD_POOL and self.view.regions.get(rid, {}).get("state") == "reclaimed":
                for off in sorted({0, max(0, h.size - 4096)}):
                    if os.pread(h.fd, 4096, off) != bytes(4096):
                        self.bad("scrub", "memfd region %d is reclaimed; %s still reads data at offset %d"
                                 % (rid, who, off))

    def final_phase(self):
        super().final_phase()
        self.daemon.store.settle()
        left = self.daemon.store.names()
        if left:
            self.bad("leak", "the fd store still holds %s after everything was reclaimed" % left)
        self.settle_violations("final checks (fd store)")

    def run(self):
        try:
            return super().run()
        finally:
            if self.daemon and self.daemon.store:
                self.daemon.store.close()
