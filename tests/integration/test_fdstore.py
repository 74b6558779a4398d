# SPDX-License-Identifier: Apache-2.0
"""Memory that survives a restart: memfd regions kept in systemd's file descriptor store
(played by fdstore.FdStore, as the protocol describes it), brokerd SIGKILLed and started again
with what the store hands back. Regions, tokens and live mappings survive; what does not come
back, or comes back not as brokerd left it, is taken down; reclaim empties the store; without
$NOTIFY_SOCKET nothing changes. The store keeps the holders' pidfds too (holder-<region>-<domain>):
after a restart brokerd still knows which processes map a sealed region, and a forced revoke
waits for them and escalates against them as before the restart."""
import fcntl
import json
import mmap
import os
import signal
import socket
import tempfile
import threading
import time
import unittest

from fdstore import FdStore, brokerd_argv, holder_name, memfd_region_fds, store_name
from harness import Client, Daemon, RpcError, main
from test_doorbells import Party, assert_connected, daemon_eventfds_synced
from test_revocation import GRACE, REVOCATION_POLICY, SIZE, HolderProcesses

MiB = 1024 * 1024
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


class StoreTest(unittest.TestCase):
    """brokerd under the fd store; self.start() and self.kill() as systemd would run it."""

    def setUp(self):
        self.d = Daemon()
        self.store = FdStore(self.d.dir)
        self.proc = None
        self.held = []
        self.sockets = []

    def tearDown(self):
        for c in self.d.clients:
            c.close()
        self.d.clients = []
        rc = 0
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(timeout=20)
        for x in self.held:
            x.close()
        for s in self.sockets:
            s.close()
        self.store.close()
        log = self.d.read_log()
        self.d.cleanup()
        self.assertEqual(rc, 0, log)
        self.assertNotIn("ERROR: AddressSanitizer", log)
        self.assertNotIn("runtime error:", log)

    def start(self, activation=False, notify=True, env=None):
        """Starts brokerd with the store's fds (and activated sockets if asked)."""
        for s in (self.d.agent_socket, self.d.admin_socket):
            if os.path.exists(s):
                os.unlink(s)
        sockets = []
        agent, admin = self.d.agent_socket, self.d.admin_socket
        if activation:
            for name, path in (("agent", agent), ("admin", admin)):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(path)
                s.listen(16)
                self.sockets.append(s)
                sockets.append((name, s.fileno()))
            agent, admin = agent + ".unused", admin + ".unused"
        log = open(self.d.log, "a")
        self.proc = self.store.spawn(brokerd_argv(self.d, agent, admin), env=env, sockets=sockets, stdout=log,
                                     stderr=log, notify=notify)
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                Client(self.d.admin_socket).call("broker.info", {})
                break
            except (ConnectionRefusedError, FileNotFoundError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("brokerd did not start:\n" + self.d.read_log())
                time.sleep(0.02)
        self.assertFalse(os.path.exists(agent + ".unused"))

    def kill(self):
        for c in self.d.clients:
            c.close()
        self.d.clients = []
        for s in self.sockets:
            s.close()
        self.sockets = []
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def share_memfd(self, c, size=2 * MiB, doorbells=0):
        """A region in the memfd pool gpu1, ro to vm1 and vm2; the owner's mapping is kept. Without
        doorbells unless asked (class Doorbells), so that the store holds memory and pidfds only."""
        r = c.call("region.share", {"owner": "hw0", "device": "gpu0", "size": size, "numa_node": 1,
                                    "peers": [{"domain": "vm1", "access": "ro"}, {"domain": "vm2", "access": "ro"}],
                                    "doorbells": doorbells})
        self.assertEqual(r["pool"], "gpu1")
        return r, self.mapping(c.take_fd(), r["size"], writable=True)

    def shared_and_attached(self, c, n):
        """n memfd regions, each with the owner's mapping and vm1's."""
        regions = []
        for _ in range(n):
            r, owner = self.share_memfd(c)
            owner[:4] = b"good"
            self.attach(c, r, 0)
            regions.append(r)
        return regions

    def mapping(self, fd, size, writable=False):
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0))
        os.close(fd)
        self.held.append(m)
        return m

    def attach(self, c, r, i):
        a = c.call("region.attach", {"domain": r["tokens"][i]["domain"], "token": r["tokens"][i]["token"]})
        return self.mapping(c.take_fd(), a["size"])

    def state(self, region):
        admin = Client(self.d.admin_socket)  # one connection per look, closed: wait_state() looks often
        try:
            return admin.call("region.get", {"region": region})["state"]
        except RpcError as e:
            self.assertEqual(e.name, "no_such_region")
            return "reclaimed"
        finally:
            admin.close()

    def wait_state(self, region, want, timeout=10):
        deadline = time.monotonic() + timeout
        while self.state(region) != want:
            if time.monotonic() > deadline:
                self.fail("region %d is %s, not %s" % (region, self.state(region), want))
            time.sleep(0.05)

    def live_memfd_regions(self):
        return sorted(r["region"] for r in self.d.admin().call("region.list", {"pool": "gpu1"})["regions"])

    def region_names(self):
        return [n for n in self.store.names() if n.startswith("region-")]

    def holder_names(self):
        return [n for n in self.store.names() if n.startswith("holder-")]

    def assert_store_matches_daemon(self):
        """The store holds exactly one fd per memfd region the daemon holds, no other, and
        holders' pidfds only for regions the daemon knows."""
        held = memfd_region_fds(self.proc.pid)
        self.assertEqual(self.region_names(), sorted(store_name(i) for i in held))
        self.assertEqual(sorted(held), self.live_memfd_regions())
        known = self.live_memfd_regions()
        for n in self.holder_names():
            self.assertIn(int(n.split("-")[1]), known, n)


class Survives(StoreTest):
    def test_region_tokens_and_mappings_survive_sigkill(self):
        self.start(activation=True)
        c = self.d.agent()
        r, owner = self.share_memfd(c)
        rid = r["region"]
        owner[:6] = b"before"
        peer1 = self.attach(c, r, 0)
        self.assertEqual(peer1[:6], b"before")
        self.assertEqual(self.store.names(), sorted([store_name(rid), holder_name(rid, "hw0"), holder_name(rid, "vm1")]))
        kept = os.fstat(self.store.fd_of(store_name(rid)))

        self.kill()
        self.start(activation=True)  # the activated sockets and the store's fds side by side
        c = self.d.agent()
        got = c.call("region.get", {"region": rid})
        self.assertEqual(got["state"], "active")
        self.assertEqual([(p["domain"], p["state"], p["mapped"]) for p in got["peers"]],
                         [("vm1", "attached", True), ("vm2", "granted", False)])
        # The daemon holds the very memory the holders map.
        held = memfd_region_fds(self.proc.pid)
        st = os.stat("/proc/%d/fd/%d" % (self.proc.pid, held[rid]))
        self.assertEqual((st.st_dev, st.st_ino), (kept.st_dev, kept.st_ino))
        self.assert_store_matches_daemon()

        # A token not yet redeemed still works, and maps the same memory as the old holders.
        peer2 = self.attach(c, r, 1)
        self.assertEqual(peer2[:6], b"before")
        owner[:5] = b"after"
        self.assertEqual(peer2[:5], b"after")
        self.assertEqual(peer1[:5], b"after")
        with self.assertRaises(RpcError) as e:
            c.call("region.attach", {"domain": "vm2", "token": r["tokens"][1]["token"]})
        self.assertEqual(e.exception.name, "token_used")

        # Reclaim removes the fds from the store. Both peers release (a forcibly revoked holder
        # whose process brokerd knows (vm1's too, from before the restart: its pidfd came back from
        # the store) and which still maps the memory would keep the range quarantined: SealedHolders).
        c.call("region.release", {"domain": "vm2", "region": rid})
        c.call("region.release", {"domain": "vm1", "region": rid})
        self.wait_state(rid, "reclaimed")  # taken down: every peer released it
        self.store.wait_names(lambda names: names == [])
        self.assertEqual(memfd_region_fds(self.proc.pid), {})
        self.assertEqual(peer1[:5], bytes(5))  # scrubbed

    def test_restart_twice_and_sigterm(self):
        """The store keeps what it was given across several starts, clean stops included."""
        self.start()
        c = self.d.agent()
        r, owner = self.share_memfd(c)
        owner[:4] = b"data"
        self.kill()
        self.start()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=20), 0)
        self.start()
        self.assertEqual(self.state(r["region"]), "offered")
        peer = self.attach(self.d.agent(), r, 0)
        self.assertEqual(peer[:4], b"data")
        self.assert_store_matches_daemon()


class TakenDown(StoreTest):
    def test_missing_fd_takes_the_region_down(self):
        self.start()
        lost, kept = self.shared_and_attached(self.d.agent(), 2)
        self.kill()
        self.store.forget(store_name(lost["region"]))
        self.start()
        self.wait_state(lost["region"], "reclaimed")
        self.assertEqual(self.state(kept["region"]), "active")
        self.assertIn("did not survive the restart", self.d.read_log())
        self.assert_store_matches_daemon()

    def forged(self, rid, size, seals, name=None, mode=0o600):
        fd = os.memfd_create(name or "brokerd:gpu1:%d" % rid, os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, size)
        os.fchmod(fd, mode)
        if seals:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        return fd

    def read_only(self, fd):
        ro = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY)
        os.close(fd)
        return ro

    def test_wrong_seals_size_name_mode_or_access_refused_and_strays_closed(self):
        self.start()
        regions = self.shared_and_attached(self.d.agent(), 6)
        unsealed, too_big, other_name, readable, ro, good = (r["region"] for r in regions)
        self.kill()
        forged = {unsealed: self.forged(unsealed, 2 * MiB, fcntl.F_SEAL_GROW),
                  too_big: self.forged(too_big, 4 * MiB, SEALS),
                  other_name: self.forged(other_name, 2 * MiB, SEALS, name="brokerd:gpu1:%d" % good),
                  readable: self.forged(readable, 2 * MiB, SEALS, mode=0o644),
                  ro: self.read_only(self.forged(ro, 2 * MiB, SEALS))}
        for rid, fd in forged.items():
            self.store.forget(store_name(rid))
            self.store.put(store_name(rid), fd)
        # One nobody claims, and one under a name that is no region's.
        self.store.put(store_name(9999), self.forged(9999, 2 * MiB, SEALS))
        self.store.put("stray", os.memfd_create("stray"))
        self.start()
        for rid in forged:
            self.wait_state(rid, "reclaimed")
        self.assertEqual(self.state(good), "active")
        self.assertEqual(self.region_names(), [store_name(good)])
        self.store.wait_names(lambda names: names == sorted([store_name(good), holder_name(good, "hw0"),
                                                             holder_name(good, "vm1")]))
        self.assert_store_matches_daemon()
        log = self.d.read_log()
        self.assertIn("could not restore its memory: File descriptor in bad state", log)
        self.assertIn("could not restore its memory: Invalid argument", log)
        self.assertIn("closing %s, passed at start: no region or mapped holder claims it" % store_name(9999), log)

    def test_cap_of_the_store(self):
        """FileDescriptorStoreMax=3 (one region and its two holders): the second region's fd is
        refused (and its holders'); it is taken down later."""
        self.store.max = 3
        self.start()
        first, second = self.shared_and_attached(self.d.agent(), 2)
        self.store.settle()
        self.assertEqual(self.store.refused, 3)
        self.kill()
        self.start()
        self.assertEqual(self.state(first["region"]), "active")
        self.wait_state(second["region"], "reclaimed")
        self.assert_store_matches_daemon()

    def test_fdstore_environment_bounds_what_is_sent(self):
        """$FDSTORE (systemd >= 254 passes FileDescriptorStoreMax=): nothing is sent beyond it."""
        self.start(env={"FDSTORE": "1"})
        self.shared_and_attached(self.d.agent(), 2)
        self.assertEqual(self.store.refused, 0)
        self.assertEqual(len(self.store.names()), 1)
        self.assertIn("the fd store is full (FileDescriptorStoreMax=1)", self.d.read_log())


class Revocable(StoreTest):
    """gpu1 revocable (docs/architecture.md, "Revocable pools"): its memfds come back with their
    own seals, and a forced revoke severs the holders of before the restart as well."""

    def setUp(self):
        super().setUp()
        with open(self.d.platform_path) as f:
            platform = json.load(f)
        for pool in platform["pools"]:
            if pool["name"] == "gpu1":
                pool["revocable"] = True
        with open(self.d.platform_path, "w") as f:
            json.dump(platform, f)

    def test_forced_revoke_after_a_restart_truncates(self):
        self.start()
        c = self.d.agent()
        r, owner = self.share_memfd(c)
        rid = r["region"]
        c.call("region.attach", {"domain": "vm1", "token": r["tokens"][0]["token"]})
        peer = c.take_fd()
        self.addCleanup(os.close, peer)
        kept = self.store.fd_of(store_name(rid))
        self.assertEqual(fcntl.fcntl(kept, fcntl.F_GET_SEALS), fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)

        self.kill()
        self.start()
        self.assertEqual(self.state(rid), "active")  # not sealed against shrink, as created
        self.assert_store_matches_daemon()
        self.d.admin().call("admin.revoke", {"region": rid, "force": True, "deadline_ms": 0})
        self.wait_state(rid, "reclaimed")
        self.assertEqual(os.fstat(peer).st_size, 0)
        self.store.wait_names(lambda names: names == [])

    def test_truncated_memfd_of_a_revoking_region(self):
        """A kill after a forced revoke truncated the memory, before the reclaim: the restart
        finds no memory to restore, which is no error, and finishes the revoke."""
        self.start()
        r, = self.shared_and_attached(self.d.agent(), 1)
        rid = r["region"]
        self.d.admin().call("admin.revoke", {"region": rid, "deadline_ms": 60000})
        self.assertEqual(self.state(rid), "revoking")
        self.kill()
        os.ftruncate(self.store.fd_of(store_name(rid)), 0)
        self.start()
        self.assertEqual(self.state(rid), "revoking")
        self.assertEqual(self.region_names(), [])
        self.d.admin().call("admin.revoke", {"region": rid, "force": True, "deadline_ms": 0})
        self.wait_state(rid, "reclaimed")
        self.assertNotIn("could not restore", self.d.read_log())


class SealedHolders(HolderProcesses, StoreTest):
    """Owner and peer are processes of their own (test_revocation.Holder) on the sealed memfd pool;
    brokerd is SIGKILLed and started again with the store's fds; then the peer ignores its recall.
    brokerd took the holders' pidfds back from the store: it waits for the peer and escalates."""
    escalation = "report"

    def setUp(self):
        self.d = Daemon(policy=REVOCATION_POLICY, extra_args=("--unplug-escalation", self.escalation, *GRACE))
        # Parked: the holders, forked from this process, must not inherit the store's memfds.
        self.store = FdStore(self.d.dir, park=True)
        self.proc = None
        self.held = []
        self.sockets = []

    def pair_then_restart(self):
        self.start()
        owner, peer = self.holder(), self.holder()
        r = owner.ask(op="share", params={"owner": "hw0", "device": "gpu0", "size": SIZE, "numa_node": 1,
                                          "peers": [{"domain": "vm1", "access": "rw"}]})
        self.assertEqual(r["pool"], "gpu1")
        rid = r["region"]
        self.assertNotIn("error", peer.ask(op="attach", params={"domain": "vm1", "token": r["tokens"][0]["token"]}))
        self.store.wait_names(lambda names: holder_name(rid, "vm1") in names)
        self.kill()
        self.start()
        self.assertEqual(self.state(rid), "active")
        self.assertEqual(self.holder_names(), sorted([holder_name(rid, "hw0"), holder_name(rid, "vm1")]))
        self.assert_store_matches_daemon()
        owner.ask(op="write", data="from-owner")
        self.assertEqual(peer.ask(op="read", n=10)["data"], "from-owner")
        # The peer ignores its recall.
        self.d.admin().call("admin.revoke", {"region": rid, "deadline_ms": 200})
        return owner, peer, rid

    def audit(self, action):
        admin = Client(self.d.admin_socket)  # one connection per look, closed
        try:
            entries = admin.call("admin.audit", {"newest": 200})["entries"]
        finally:
            admin.close()
        return [e for e in entries if e["action"] == action]

    def wait_audit(self, action, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.audit(action):
            if time.monotonic() > deadline:
                self.fail("no audit row %s" % action)
            time.sleep(0.05)

    def test_quarantined_while_the_peer_of_before_the_restart_maps_it(self):
        owner, peer, rid = self.pair_then_restart()
        self.wait_audit("escalate-report")
        time.sleep(0.5)
        self.assertEqual(self.state(rid), "revoking")  # quarantined, never reclaimed
        owner.ask(op="write", data="still-here")
        self.assertEqual(peer.ask(op="read", n=10)["data"], "still-here")
        # Once the peer exits, nothing reaches the memory: reclaimed, and the store is empty.
        peer.ask(op="exit", timeout=1)
        self.assertEqual(peer.wait(), 0)
        self.wait_state(rid, "reclaimed")
        self.store.wait_names(lambda names: names == [])


class SealedHoldersKill(SealedHolders):
    escalation = "kill"

    def test_quarantined_while_the_peer_of_before_the_restart_maps_it(self):
        owner, peer, rid = self.pair_then_restart()
        self.assertEqual(peer.wait(), signal.SIGKILL)
        self.assertTrue(self.audit("escalate-destroy"))
        self.wait_state(rid, "reclaimed")
        self.store.wait_names(lambda names: names == [])


class WithoutServiceManager(StoreTest):
    def test_no_notify_socket_changes_nothing(self):
        """No $NOTIFY_SOCKET: nothing is sent, and memfd regions die with the daemon as before."""
        self.start(notify=False)
        c = self.d.agent()
        attached, = self.shared_and_attached(c, 1)
        offered, _ = self.share_memfd(c)
        self.assertEqual(self.store.names(), [])
        self.assertEqual(self.store.messages, [])
        self.kill()
        self.start(notify=False)
        # The owner had mapped both: holders would see other memory than new attachers.
        self.wait_state(attached["region"], "reclaimed")
        self.wait_state(offered["region"], "reclaimed")
        self.assertEqual(self.store.names(), [])
        self.assertEqual(self.store.messages, [])


class Doorbells(StoreTest):
    """The doorbells' eventfds are kept in the store (bell-<region>-<from>-<to>-<vector>, parties 0
    the owner, 1.. the peers in share order): after a SIGKILL brokerd takes them back, so the ends
    the parties hold keep working and region.doorbells hands the same eventfds again."""

    def bell_names(self):
        return [n for n in self.store.names() if n.startswith("bell-")]

    def test_pairs_survive_sigkill(self):
        self.start()
        owner, vm1 = Party(self.d, "hw0"), Party(self.d, "vm1")
        r, _ = self.share_memfd(owner.c, doorbells=2)
        rid = r["region"]
        a = vm1.c.call("region.attach", {"domain": "vm1", "token": r["tokens"][0]["token"]})
        self.mapping(vm1.c.take_fd(), a["size"])
        vm1.take_bells(a)
        owner.c.wait_notification("region.joined")
        owner.fetch(rid)
        self.store.settle()
        self.assertEqual(self.bell_names(), ["bell-%d-%d-%d-%d" % (rid, f, t, v)
                                             for f, t in ((0, 1), (1, 0)) for v in (0, 1)])

        self.kill()
        self.start()
        self.assertEqual(daemon_eventfds_synced(self.d, self.proc.pid), 4)  # taken back, none made anew
        # The ends held across the restart still connect (they never depended on brokerd).
        assert_connected(self, owner, vm1)
        # What region.doorbells hands now are the same eventfds: the owner's new ends reach vm1's old ones.
        owner.reconnect()
        got = owner.fetch(rid)
        self.assertEqual(got["generation"], 1)
        assert_connected(self, owner, vm1)
        self.store.settle()
        self.assertEqual(len(self.bell_names()), 4)

        # vm1 releases: its pairs leave the store and brokerd; then nothing of the region's is left.
        vm1.reconnect()
        vm1.c.call("region.release", {"domain": "vm1", "region": rid})
        self.store.wait_names(lambda names: not any(n.startswith("bell-") for n in names))
        self.assertEqual(daemon_eventfds_synced(self.d, self.proc.pid), 0)
        for p in (owner, vm1):
            p.close()


class Parking(unittest.TestCase):
    """The emulator itself: parking holds the lock its notification reader needs, so it must
    never block. A thousand fds (more than one message an fd fits in a socket's send buffer,
    about 278) park and come back, in order by name, within seconds."""

    def test_many_fds_park_and_return(self):
        d = tempfile.mkdtemp(prefix="brokerd-park.")
        store = FdStore(d, park=True)
        fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(1000)]
        want = [(i % 300, os.fstat(fd).st_ino) for i, fd in enumerate(fds)]
        done = []

        def park_and_return():
            with store.lock:
                store.entries = [["n%d" % (i % 300), fd] for i, fd in enumerate(fds)]
                store._park_all()
                done.append(all(e[1] is None for e in store.entries))
            with store.unparked():
                done.append([(int(e[0][1:]), os.fstat(e[1]).st_ino) for e in store.entries])

        t = threading.Thread(target=park_and_return, daemon=True)
        t.start()
        t.join(timeout=30)
        self.assertFalse(t.is_alive(), "parking blocked")
        self.assertEqual(done[0], True)
        self.assertEqual(done[1], want)
        with store.unparked(), store.lock:
            for e in store.entries:
                os.close(e[1])
            store.entries = []
        store.stopping = True
        store.sock.close()
        os.unlink(store.path)
        os.rmdir(d)


if __name__ == "__main__":
    main()
