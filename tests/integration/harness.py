# SPDX-License-Identifier: Apache-2.0
"""Starts the real brokerd on temp sockets and a temp DB, and talks to it.

Every reply the tests receive goes through rpcschema.validate_reply (schemas/rpc), so a
reply that drifts from the schemas fails the test that provoked it.
"""
import array
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "schema"))
import rpcschema  # noqa: E402

BROKERD = os.environ.get("BROKERD_BIN", "build/brokerd/daemon/brokerd")
BROKERCTL = os.environ.get("BROKERCTL_BIN", "build/client/brokerctl")
AGENT = os.environ.get("BROKERD_AGENT_BIN", "build/examples/brokerd-agent")
EXAMPLES = os.environ.get("BROKERD_EXAMPLES", os.path.join(HERE, "..", "..", "docs", "examples"))

NOBODY = 65534  # the second uid of the identity tests

PLATFORM = {
    "memory": [{"name": "bank0", "base": 0, "size": "8GiB", "numa_node": 0},
               {"name": "bank1", "base": "8GiB", "size": "8GiB", "numa_node": 1}],
    "reserved": [{"name": "msi-doorbell", "base": "0xfee00000", "size": "1MiB"}],
    "pools": [
        # file-backed: regions survive a daemon restart
        {"name": "net0", "base": "1GiB", "size": "64MiB", "numa_node": 0, "granule": "4KiB",
         "backing": {"kind": "shm", "path": "@SHM@"}},
        {"name": "gpu1", "base": "8GiB", "size": "64MiB", "numa_node": 1, "granule": "2MiB",
         "backing": {"kind": "memfd"}},
    ],
    "devices": [
        {"name": "nic0", "owner": "hw0", "dma_mask_bits": 32},
        {"name": "gpu0", "owner": "hw0", "dma_mask_bits": 64},
    ],
}

POLICY = {
    "agents": [
        {"uid": 0, "domains": ["hw0", "vm1", "vm2"]},
        {"uid": NOBODY, "domains": ["vm2"]},
    ],
    "shares": [
        {"sharer": "hw0", "device": "nic0", "peers": ["vm1"], "access": "rw", "max_region": "32MiB"},
        {"sharer": "hw0", "device": "nic0", "peers": ["vm2"], "access": "ro"},
        {"sharer": "hw0", "device": "gpu0", "peers": ["vm1", "vm2"], "access": "ro", "multi_peer": True},
    ],
    "quotas": [{"domain": "hw0", "max_bytes": "56MiB", "max_regions": 16}],
}


class RpcError(Exception):
    def __init__(self, error):
        super().__init__(f"{error.get('data', {}).get('name', error['code'])}: {error['message']}")
        self.error = error
        self.code = error["code"]
        self.name = error.get("data", {}).get("name")


class Client:
    """A JSON-RPC client over the daemon's socket: newline framing, SCM_RIGHTS fds."""

    def __init__(self, path, uid=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""
        self.fds = []
        # Doorbell ends (docs/protocol.md "Doorbells") are kept apart from self.fds, so that
        # take_fd() still gives the mappings in order: reply_fds is the last reply line's fds
        # (indexed as "send"/"recv" say), bell_fds every doorbell end not closed yet.
        self.reply_fds = []
        self.bell_fds = []
        self.notifications = []
        self.next_id = 1

    def close(self):
        self.sock.close()
        for fd in self.fds + self.bell_fds:
            os.close(fd)
        self.fds = []
        self.bell_fds = []

    def send_raw(self, data):
        self.sock.sendall(data)

    def read_line(self):
        while b"\n" not in self.buf:
            msg, fds, _, _ = socket.recv_fds(self.sock, 65536, 253)  # SCM_MAX_FD
            self.fds.extend(fds)
            if not msg:
                raise ConnectionResetError("brokerd closed the connection")
            self.buf += msg
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    # A reply with an error and no id: brokerd refused the line before it could read its id.
    # The tests send such lines through call() and get RpcError; a client that never does may
    # count it, like any other id, as not the request's (tests/crash/churn.py).
    ID_LESS_ERROR_IS_RPC_ERROR = True

    def check_notification(self, obj):
        rpcschema.validate_notification(obj)

    def check_reply(self, method, reply):
        rpcschema.validate_reply(method, reply)

    def read_reply(self):
        """The next line that is not a notification (notifications are checked and queued)."""
        while True:
            obj = self.read_line()
            if isinstance(obj, dict) and "id" not in obj and "method" in obj:
                self.check_notification(obj)
                self.notifications.append(obj)
                continue
            return obj

    def call(self, method, params=None, validate=True):
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        self.next_id += 1
        if params is not None:
            req["params"] = params
        first_fd = len(self.fds)
        self.send_raw((json.dumps(req) + "\n").encode())
        reply = self.read_reply()
        if validate:
            self.check_reply(method, reply)
        self.set_apart_bells(reply, first_fd)
        if self.ID_LESS_ERROR_IS_RPC_ERROR and reply.get("id") is None and "error" in reply:
            raise RpcError(reply["error"])  # the line was refused before its id could be read
        if reply.get("id") != req["id"]:
            raise AssertionError(f"reply id {reply.get('id')} for request {req['id']}")
        if "error" in reply:
            raise RpcError(reply["error"])
        return reply["result"]

    def set_apart_bells(self, reply, first_fd):
        """Moves the doorbell ends of a reply (single or batch) from self.fds to self.bell_fds; the
        reply's fds are those that came after self.fds[first_fd - 1] (notifications carry none)."""
        self.reply_fds = self.fds[first_fd:]
        for r in reply if isinstance(reply, list) else [reply]:
            res = r.get("result") if isinstance(r, dict) else None
            bells = res.get("doorbells") if isinstance(res, dict) else None
            for bell in bells if isinstance(bells, list) else []:  # a region object's is a dict
                for end in ("send", "recv"):
                    fd = self.reply_fds[bell[end]]
                    self.fds.remove(fd)
                    self.bell_fds.append(fd)

    def close_bell(self, fd):
        self.bell_fds.remove(fd)
        os.close(fd)

    def take_fd(self):
        return self.fds.pop(0)

    def wait_notification(self, method, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            for i, n in enumerate(self.notifications):
                if n["method"] == method:
                    return self.notifications.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} notification")
            self.sock.settimeout(remaining)
            try:
                obj = self.read_line()
            finally:
                self.sock.settimeout(10)
            rpcschema.validate_notification(obj)
            self.notifications.append(obj)


class Daemon:
    """One brokerd process, started and stopped by pid; its files live in a temp dir."""

    def __init__(self, policy=None, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="brokerd-it-", dir="/dev/shm")
        os.chmod(self.dir, 0o755)  # the second uid must reach the agent socket
        self.shm = os.path.join(self.dir, "pool")
        os.mkdir(self.shm, 0o700)
        self.platform_path = os.path.join(self.dir, "platform.json")
        self.policy_path = os.path.join(self.dir, "policy.json")
        self.db = os.path.join(self.dir, "state", "brokerd.db")
        self.agent_socket = os.path.join(self.dir, "agent.sock")
        self.admin_socket = os.path.join(self.dir, "admin.sock")
        self.log = os.path.join(self.dir, "brokerd.log")
        self.extra_args = list(extra_args)
        platform = json.loads(json.dumps(PLATFORM).replace("@SHM@", self.shm))
        with open(self.platform_path, "w") as f:
            json.dump(platform, f)
        self.write_policy(policy or POLICY)
        self.proc = None
        self.clients = []

    def write_policy(self, policy):
        with open(self.policy_path, "w") as f:
            f.write(policy if isinstance(policy, str) else json.dumps(policy))

    def start(self, env=None):
        """Starts brokerd; env adds to the environment (BROKERD_CRASHPOINT, say)."""
        for s in (self.agent_socket, self.admin_socket):
            if os.path.exists(s):
                os.unlink(s)
        self.logf = open(self.log, "a")
        self.proc = self.launch(env)
        deadline = time.monotonic() + 20
        while not (os.path.exists(self.agent_socket) and os.path.exists(self.admin_socket)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"brokerd exited with {self.proc.returncode}:\n{self.read_log()}")
            if time.monotonic() > deadline:
                raise RuntimeError("brokerd did not create its sockets:\n" + self.read_log())
            time.sleep(0.02)
        return self

    def launch(self, env):
        """The brokerd process, its output to the log (a subclass may run it otherwise: under an fd
        store, tests/e2e/e2e_guests.py)."""
        return subprocess.Popen(
            [BROKERD, "--platform", self.platform_path, "--policy", self.policy_path, "--db", self.db,
             "--agent-socket", self.agent_socket, "--admin-socket", self.admin_socket,
             "--agent-group", "nogroup", "--log-target", "stderr", *self.extra_args],
            stdout=self.logf, stderr=self.logf, env={**os.environ, **(env or {})})

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        for c in self.clients:
            c.close()
        self.clients = []
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()
        rc = self.proc.returncode if self.proc else 0
        self.proc = None
        return rc

    def restart(self):
        rc = self.stop()
        self.start()
        return rc

    def signal(self, sig):
        self.proc.send_signal(sig)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def agent(self):
        c = Client(self.agent_socket)
        self.clients.append(c)
        return c

    def admin(self):
        c = Client(self.admin_socket)
        self.clients.append(c)
        return c

    def brokerctl(self, *args, check=True):
        p = subprocess.run([BROKERCTL, "--socket", self.admin_socket, *args], capture_output=True, text=True,
                           timeout=30)
        if check and p.returncode != 0:
            raise AssertionError(f"brokerctl {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    def run_agent(self, *args, check=True, timeout=30):
        p = subprocess.run([AGENT, "--socket", self.agent_socket, *args], capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"brokerd-agent {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    def spawn_agent(self, *args):
        return subprocess.Popen([AGENT, "--socket", self.agent_socket, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def db_snapshot(db):
    """A connection to a copy of brokerd's database and its WAL, taken now. brokerd holds its
    file exclusively (sqlite's exclusive locking, docs/store.md), so nobody else can open it while
    it runs; a copy taken while it is idle holds what a crash at that moment would leave. The
    copy goes with the connection's close()."""
    snap = tempfile.mkdtemp(prefix="brokerd-db-snap.")
    path = os.path.join(snap, "brokerd.db")
    # Callers take it while brokerd is idle; the WAL first, so that a commit landing in between
    # only adds frames the copied file does not need.
    for ext in ("-wal", ""):
        if os.path.exists(db + ext):
            shutil.copyfile(db + ext, path + ext)
    con = sqlite3.connect(path, isolation_level=None)

    class Snapshot:
        def __getattr__(self, name):
            return getattr(con, name)

        def close(self):
            con.close()
            shutil.rmtree(snap, ignore_errors=True)
    return Snapshot()


def as_user(uid, gid, fn):
    """Runs fn() in a forked child with that uid and gid (no supplementary groups) and
    returns what it returned (JSON); an exception in the child comes back as {"exception"}."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            result = fn()
        except BaseException as e:  # never return into the test runner
            result = {"exception": repr(e)}
        os.write(wfd, json.dumps(result).encode())
        os._exit(0)
    os.close(wfd)
    data = b""
    while chunk := os.read(rfd, 65536):
        data += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    return json.loads(data)


class DaemonTest(unittest.TestCase):
    policy = None
    extra_args = ()

    def setUp(self):
        self.d = Daemon(policy=self.policy, extra_args=self.extra_args).start()

    def tearDown(self):
        rc = self.d.stop()
        log = self.d.read_log()
        self.d.cleanup()
        # A clean stop, and no sanitizer reports.
        self.assertIn(rc, (0,), log)
        self.assertNotIn("ERROR: AddressSanitizer", log)
        self.assertNotIn("runtime error:", log)

    def share(self, client, device="nic0", size=4096, peers=(("vm1", "rw"),), **extra):
        params = {"owner": "hw0", "device": device, "size": size,
                  "peers": [{"domain": d, "access": a} for d, a in peers], **extra}
        return client.call("region.share", params)


def main():
    runner = unittest.TextTestRunner(verbosity=2)
    result = unittest.main(exit=False, testRunner=runner).result
    sys.exit(0 if result.wasSuccessful() else 1)
