# SPDX-License-Identifier: Apache-2.0
"""Revocation that severs, on the host-process (memfd) backend, tried as a hostile pair would.

The owner and the peer are separate processes that connect to brokerd themselves (so brokerd
takes their pidfds), receive their fds and keep them mapped. The peer ignores its recall. After
the deadline (and --unplug-grace) the daemon's escalation decides what holds:
  stop   the peer is stopped: it cannot touch the memory any more; the region is reclaimed
  kill   the peer is killed; the region is reclaimed
  report they can still exchange bytes; the region stays quarantined until the peer exits
and a revocable pool's forced revoke truncates the memory: every touch is SIGBUS.
Plus: a holder process that exits loses its attachment, and an owner that exits its regions.
"""
import json
import mmap
import os
import select
import signal
import socket
import time

from harness import POLICY, PLATFORM, Client, Daemon, DaemonTest, RpcError, main

# A rule that lets the pair exchange bytes both ways through the memfd pool.
REVOCATION_POLICY = json.loads(json.dumps(POLICY))
REVOCATION_POLICY["shares"].append({"sharer": "hw0", "device": "gpu0", "peers": ["vm1"], "access": "rw"})
REVOCATION_POLICY["shares"].append({"sharer": "hw0", "device": "gpu0", "peers": ["vm2"], "access": "rw"})
SIZE = 2 * 1024 * 1024
GRACE = ("--unplug-grace", "100ms")


class Holder:
    """A forked process that talks to brokerd on its own connection and maps what it receives.

    The parent sends it one JSON command a line and reads one JSON answer a line."""

    def __init__(self, socket_path):
        to_child, self.to_child = socket.socketpair()
        self.from_child, from_child = socket.socketpair()
        self.pid = os.fork()
        if self.pid == 0:
            self.to_child.close()
            self.from_child.close()
            code = 0
            try:
                self._serve(socket_path, to_child.makefile("r"), from_child)
            except BaseException:  # noqa: B036 - the child must never return into unittest
                code = 1
            os._exit(code)
        to_child.close()
        from_child.close()
        self.rfile = self.from_child.makefile("r")

    # ---- child side ----
    def _serve(self, socket_path, rfile, out):
        client = Client(socket_path)
        mem = None
        for line in rfile:
            cmd = json.loads(line)
            op, ans = cmd["op"], {}
            try:
                if op in ("share", "attach"):
                    ans = client.call("region." + op, cmd["params"])
                    fd = client.take_fd()
                    prot = mmap.PROT_READ | (mmap.PROT_WRITE if ans.get("access", "rw") == "rw" else 0)
                    mem = mmap.mmap(fd, ans["size"], mmap.MAP_SHARED, prot)
                    os.close(fd)  # the mapping is what it keeps
                elif op == "call":
                    ans = client.call(cmd["method"], cmd["params"])
                elif op == "write":
                    mem[0:len(cmd["data"])] = cmd["data"].encode()
                elif op == "read":
                    ans = {"data": mem[0:cmd["n"]].decode(errors="replace")}
                elif op == "drop":
                    mem.close()
                    mem = None
                elif op == "probe":
                    ans = {"signal": self._probe(mem, cmd.get("write", False))}
                elif op == "exit":
                    return
            except RpcError as e:
                ans = {"error": e.name}
            out.sendall((json.dumps(ans) + "\n").encode())

    @staticmethod
    def _probe(mem, write):
        """Touches the mapping from a child of the holder: the signal that ended it, or 0."""
        pid = os.fork()
        if pid == 0:
            if write:
                mem[0:1] = b"x"
            else:
                _ = mem[0]
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0

    # ---- parent side ----
    def ask(self, timeout=10, **cmd):
        """The answer, or None when none came within timeout (the holder cannot run)."""
        self.to_child.sendall((json.dumps(cmd) + "\n").encode())
        if not select.select([self.from_child], [], [], timeout)[0]:
            return None
        line = self.rfile.readline()
        if not line:
            return None
        return json.loads(line)

    def state(self):
        """The process state letter from /proc (T: stopped, Z: dead, not yet reaped)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return "gone"

    def wait(self, timeout=10):
        """The signal that ended the process, 0 for an exit; None if it still runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
            time.sleep(0.02)
        return None

    def close(self):
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0
        self.to_child.close()
        self.from_child.close()


class HolderProcesses:
    """Mixin: self.holder() forks a Holder on self.d's agent socket; tearDown kills what is left."""
    holders = ()

    def holder(self):
        h = Holder(self.d.agent_socket)
        self.holders = [*self.holders, h]
        return h

    def tearDown(self):
        for h in self.holders:
            h.close()
        super().tearDown()


class RevocationTest(HolderProcesses, DaemonTest):
    policy = REVOCATION_POLICY
    revocable = False

    def setUp(self):
        self.d = Daemon(policy=self.policy, extra_args=self.extra_args)
        platform = json.loads(json.dumps(PLATFORM).replace("@SHM@", self.d.shm))
        for pool in platform["pools"]:
            if pool["backing"]["kind"] == "memfd" and self.revocable:
                pool["revocable"] = True
        with open(self.d.platform_path, "w") as f:
            json.dump(platform, f)
        self.d.start()

    def pair(self):
        """Owner and peer, both mapping one region rw: bytes pass both ways."""
        owner, peer = self.holder(), self.holder()
        r = owner.ask(op="share", params={"owner": "hw0", "device": "gpu0", "size": SIZE, "numa_node": 1,
                                          "peers": [{"domain": "vm1", "access": "rw"}]})
        self.assertNotIn("error", r)
        a = peer.ask(op="attach", params={"domain": "vm1", "token": r["tokens"][0]["token"]})
        self.assertEqual(a["access"], "rw")
        owner.ask(op="write", data="from-owner")
        self.assertEqual(peer.ask(op="read", n=10)["data"], "from-owner")
        peer.ask(op="write", data="from-peer!")
        self.assertEqual(owner.ask(op="read", n=10)["data"], "from-peer!")
        return owner, peer, r["region"]

    def revoke_ignored(self, owner, region):
        """The owner revokes with a short deadline; the peer ignores its recall."""
        owner.ask(op="call", method="region.revoke",
                  params={"owner": "hw0", "region": region, "deadline_ms": 200})

    def region_state(self, region):
        if not getattr(self, "adm", None):
            self.adm = self.d.admin()
        try:
            return self.adm.call("region.get", {"region": region})["state"]
        except RpcError as e:
            self.assertEqual(e.name, "no_such_region")
            return "reclaimed"

    def wait_state(self, region, state, timeout=10):
        deadline = time.monotonic() + timeout
        while self.region_state(region) != state:
            if time.monotonic() > deadline:
                self.fail(f"region {region} is {self.region_state(region)}, not {state}")
            time.sleep(0.05)

    def audit(self, action):
        self.region_state(0)  # the admin connection
        entries = self.adm.call("admin.audit", {"newest": 200})["entries"]
        return [e for e in entries if e["action"] == action]

    def wait_audit(self, action, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.audit(action):
            if time.monotonic() > deadline:
                self.fail(f"no audit row {action}")
            time.sleep(0.05)
        return self.audit(action)


class Stop(RevocationTest):
    extra_args = ("--unplug-escalation", "stop", *GRACE)

    def test_peer_is_stopped_and_region_reclaimed(self):
        owner, peer, region = self.pair()
        self.revoke_ignored(owner, region)
        self.wait_audit("escalate-pause")
        # Stopped before it could touch the memory again: it answers nothing.
        self.assertEqual(peer.state(), "T")
        owner.ask(op="write", data="after-stop")
        self.assertIsNone(peer.ask(op="read", n=10, timeout=0.5))
        self.assertEqual(peer.state(), "T")
        # Nothing can reach the memory any more: reclaimed.
        self.wait_state(region, "reclaimed")


class Kill(RevocationTest):
    extra_args = ("--unplug-escalation", "kill", *GRACE)

    def test_peer_is_killed_and_region_reclaimed(self):
        owner, peer, region = self.pair()
        self.revoke_ignored(owner, region)
        self.assertEqual(peer.wait(), signal.SIGKILL)
        self.assertTrue(self.audit("escalate-destroy"))
        self.wait_state(region, "reclaimed")
        # The owner's old memory reaches nobody: the peer is gone.
        self.assertIsNotNone(owner.ask(op="write", data="to-nobody"))


class Report(RevocationTest):
    extra_args = ("--unplug-escalation", "report", *GRACE)

    def test_bytes_still_pass_and_region_stays_quarantined(self):
        owner, peer, region = self.pair()
        self.revoke_ignored(owner, region)
        self.wait_audit("escalate-report")
        # report acts on nobody: the pair still exchanges bytes through the old memory...
        owner.ask(op="write", data="still-here")
        self.assertEqual(peer.ask(op="read", n=10)["data"], "still-here")
        peer.ask(op="write", data="me-too....")
        self.assertEqual(owner.ask(op="read", n=10)["data"], "me-too....")
        # ...and brokerd says so: revoking (quarantined), never reclaimed, shown as overdue.
        time.sleep(0.5)
        self.assertEqual(self.region_state(region), "revoking")
        self.assertIn("+overdue(report)", self.d.brokerctl("list").stdout)
        # Once the peer exits, nothing reaches the memory: reclaimed.
        peer.ask(op="exit", timeout=1)
        self.assertEqual(peer.wait(), 0)
        self.wait_state(region, "reclaimed")

    def test_peer_that_lets_go_late_is_seen(self):
        owner, peer, region = self.pair()
        self.revoke_ignored(owner, region)
        self.wait_audit("escalate-report")
        self.assertEqual(self.region_state(region), "revoking")
        # It drops its mapping (without a release, still running): brokerd notices on its next look.
        peer.ask(op="drop")
        self.wait_state(region, "reclaimed")
        self.assertIsNone(peer.wait(timeout=0.1))  # alive: nobody acted on it

    def test_peer_that_dropped_its_mapping_is_not_waited_for(self):
        owner = self.holder()
        r = owner.ask(op="share", params={"owner": "hw0", "device": "gpu0", "size": SIZE, "numa_node": 1,
                                          "peers": [{"domain": "vm1", "access": "rw"}]})
        # This peer (the test process) attaches and closes the fd without mapping it.
        c = self.d.agent()
        c.call("region.attach", {"domain": "vm1", "token": r["tokens"][0]["token"]})
        os.close(c.take_fd())
        owner.ask(op="call", method="region.revoke", params={"owner": "hw0", "region": r["region"], "force": True})
        self.wait_state(r["region"], "reclaimed")


class Revocable(RevocationTest):
    revocable = True

    def test_deadline_truncates_for_everyone(self):
        owner, peer, region = self.pair()
        self.revoke_ignored(owner, region)
        self.wait_state(region, "reclaimed")
        for h in (owner, peer):
            self.assertEqual(h.ask(op="probe", write=True)["signal"], signal.SIGBUS)
        self.assertIsNone(peer.wait(timeout=0.1))  # not signalled itself: only a touch faults

    def test_forced_revoke_truncates_for_everyone(self):
        owner, peer, region = self.pair()
        owner.ask(op="call", method="region.revoke", params={"owner": "hw0", "region": region, "force": True})
        self.wait_state(region, "reclaimed")
        for h in (owner, peer):
            for write in (False, True):
                self.assertEqual(h.ask(op="probe", write=write)["signal"], signal.SIGBUS)


class HolderExit(RevocationTest):
    def test_peer_exit_releases_its_attachment(self):
        owner, peer, region = self.pair()
        peer.ask(op="exit", timeout=1)
        self.assertEqual(peer.wait(), 0)
        rows = self.wait_audit("release")
        self.assertEqual(rows[-1].get("reason"), "holder process exited")
        # Its only peer gone, the region is taken down.
        self.wait_state(region, "reclaimed")

    def test_owner_exit_revokes_its_region(self):
        owner, peer, region = self.pair()
        owner.ask(op="exit", timeout=1)
        self.assertEqual(owner.wait(), 0)
        rows = self.wait_audit("revoke")
        self.assertIn("owner process exited", [e.get("reason") for e in rows])
        self.assertEqual(self.region_state(region), "revoking")
        # The peer gets its recall and lets go: reclaimed.
        peer.ask(op="call", method="region.release", params={"domain": "vm1", "region": region})
        self.wait_state(region, "reclaimed")

    def test_mapping_lives_as_long_as_the_receiving_process(self):
        """The rule for an agent that hands the fd to a worker: the mapping lives as long as the
        process that received the fd over the socket. The worker keeps its copy, but brokerd
        released the attachment when the agent exited."""
        owner = self.holder()
        r = owner.ask(op="share", params={"owner": "hw0", "device": "gpu0", "size": SIZE, "numa_node": 1,
                                          "peers": [{"domain": "vm1", "access": "rw"}]})
        rd, wr = os.pipe()
        agent = os.fork()
        if agent == 0:
            code = 1
            try:
                os.close(wr)
                c = Client(self.d.agent_socket)
                c.call("region.attach", {"domain": "vm1", "token": r["tokens"][0]["token"]})
                c.take_fd()  # handed on to the worker, which inherits it
                if os.fork() == 0:  # the worker: keeps the fd, outlives the agent until the test ends
                    os.read(rd, 1)
                    os._exit(0)
                code = 0
            finally:
                os._exit(code)
        os.close(rd)
        try:
            _, status = os.waitpid(agent, 0)
            self.assertEqual(os.WEXITSTATUS(status), 0)
            rows = self.wait_audit("release")
            self.assertEqual(rows[-1].get("reason"), "holder process exited")
            self.assertEqual(rows[-1].get("domain"), "vm1")
        finally:
            os.close(wr)

if __name__ == "__main__":
    main()
