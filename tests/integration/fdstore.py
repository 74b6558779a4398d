# SPDX-License-Identifier: Apache-2.0
"""systemd's file descriptor store, played by the tests (systemd is not PID 1 here).

FdStore does what the service manager does for one unit with FileDescriptorStoreMax=: it
listens on a SOCK_DGRAM unix socket given to the daemon as $NOTIFY_SOCKET, accepts
notifications only from the main pid (NotifyAccess=main), keeps every fd sent with FDSTORE=1
under its FDNAME (systemd keeps each fd sent, suppresses only the very same open file, and
refuses fds beyond the cap), removes every fd of a name on FDSTOREREMOVE=1, and at each start
hands all of them to the daemon as fds 3.. with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (the
daemon's own pid: `sh -c 'LISTEN_PID=$$ exec ...'`), socket-activation fds first.

systemd is not the process that holds mappings; a test whose holders live in the process that
plays the store (the churn's agents) would keep every region reachable through the store's own
fds, and brokerd waits for a revoked holder that still reaches the memory. FdStore(park=True)
keeps its fds in flight on a socketpair between uses (out of this process's fd table), taking
them out only inside unparked() and while it handles a notification or starts the daemon.
"""
import array
import contextlib
import ctypes
import fcntl
import json
import os
import platform
import re
import socket
import struct
import subprocess
import threading
import time

import harness

SCM_CREDENTIALS = 2
KCMP_FILE = 0
KCMP_SYSCALL = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
_libc = ctypes.CDLL(None, use_errno=True)


def same_file(a, b):
    """Whether two of our fds are one open file description (systemd's same_fd(), by kcmp)."""
    if KCMP_SYSCALL is not None:
        r = _libc.syscall(KCMP_SYSCALL, os.getpid(), os.getpid(), KCMP_FILE, a, b)
        if r >= 0:
            return r == 0
    sa, sb = os.fstat(a), os.fstat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino) and os.lseek(a, 0, os.SEEK_CUR) == os.lseek(b, 0, os.SEEK_CUR)


class FdStore:
    def __init__(self, directory, max_fds=64, park=False):
        self.path = os.path.join(directory, "notify.sock")
        self.max = max_fds
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.lock = threading.Condition()
        self.entries = []      # [name, fd]: what the store holds, in the order it was sent
        self.refused = 0       # fds beyond the cap
        self.messages = []     # every accepted notification, as text
        self.main_pid = None
        self.barrier = self.barrier_seen = 0
        self.stopping = False
        self.parking = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) if park else None
        self.unparked_depth = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    # -- the service manager's side of the protocol

    def _serve(self):
        while not self.stopping:
            try:
                msg, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(253 * 4) + socket.CMSG_SPACE(12))
            except OSError:
                return
            fds, pid = [], None
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(data[:len(data) - len(data) % a.itemsize])
                    fds.extend(a)
                elif level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                    pid = struct.unpack("iII", data[:12])[0]
            with self.lock:
                text = msg.decode(errors="replace")
                if pid == os.getpid() and text.startswith("HARNESS_BARRIER="):
                    self.barrier_seen = int(text.split("=", 1)[1])
                    self.lock.notify_all()
                    continue
                while self.main_pid == "starting":  # its pid is not known yet
                    self.lock.wait()
                if self.main_pid is None or pid != self.main_pid:
                    for fd in fds:  # NotifyAccess=main: others are ignored, their fds closed
                        os.close(fd)
                    continue
                with self.unparked():
                    self._handle(text, fds)
                self.lock.notify_all()

    def _handle(self, text, fds):
        fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
        self.messages.append(text)
        name = fields.get("FDNAME", "stored")
        if fields.get("FDSTOREREMOVE") == "1" and "FDNAME" in fields:
            for e in [e for e in self.entries if e[0] == name]:
                os.close(e[1])
                self.entries.remove(e)
        if fields.get("FDSTORE") != "1":
            for fd in fds:
                os.close(fd)
            return
        for fd in fds:
            if len(self.entries) >= self.max:
                self.refused += 1
                os.close(fd)
            elif any(same_file(e[1], fd) for e in self.entries):
                os.close(fd)
            else:
                self.entries.append([name, fd])

    # -- parking (park=True)

    # A parked message carries this many fds at most (the kernel's SCM_MAX_FD is 253). One
    # message an fd would fill the socket's send buffer after about 278 fds, and the parking
    # sendmsg, made with the lock held, would block: this thread would stop reading brokerd's
    # notifications and brokerd would block sending them (a deadlock seen in the churn once
    # the store held a few hundred fds).
    PARK_BATCH = 200

    def _park_all(self):
        """Every fd of the store sent in flight and closed here (the lock held)."""
        if not self.parking or self.unparked_depth:
            return
        todo = [e for e in self.entries if e[1] is not None]
        for i in range(0, len(todo), self.PARK_BATCH):
            batch = todo[i:i + self.PARK_BATCH]
            socket.send_fds(self.parking[0], [json.dumps([e[0] for e in batch]).encode()], [e[1] for e in batch])
            for e in batch:
                os.close(e[1])
                e[1] = None

    def _unpark_all(self):
        """Every parked fd received back into its entry (the lock held; FIFO, so by name)."""
        while any(e[1] is None for e in self.entries):
            msg, fds, _, _ = socket.recv_fds(self.parking[1], 1 << 20, self.PARK_BATCH)
            for name, fd in zip(json.loads(msg), fds):
                next(e for e in self.entries if e[1] is None and e[0] == name)[1] = fd

    @contextlib.contextmanager
    def unparked(self):
        """Within: the store's fds are open in this process (what fd_of() and entries_copy()
        return is usable). Without parking, always."""
        with self.lock:
            if self.parking:
                self._unpark_all()
            self.unparked_depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.unparked_depth -= 1
                self._park_all()

    # -- what the tests look at and change

    def names(self):
        """What the store holds once it handled every notification sent so far (the daemon sends
        FDSTORE=1 before it answers, but this thread may not have read it yet)."""
        if not self.stopping:
            self.settle()
        with self.lock:
            return sorted(e[0] for e in self.entries)

    def fd_of(self, name):
        with self.lock:
            return next(e[1] for e in self.entries if e[0] == name)

    def put(self, name, fd):
        """Puts fd (taken) in the store, as if the daemon had sent it."""
        with self.lock:
            self.entries.append([name, fd])
            self._park_all()

    def forget(self, name):
        """The store loses every fd of name (as if it had never come back)."""
        with self.lock, self.unparked():
            for e in [e for e in self.entries if e[0] == name]:
                os.close(e[1])
                self.entries.remove(e)

    def wait_names(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not pred(sorted(e[0] for e in self.entries)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the fd store holds %s" % sorted(e[0] for e in self.entries))
                self.lock.wait(left)
            return sorted(e[0] for e in self.entries)

    def settle(self, timeout=10):
        """Returns once every notification sent before the call was handled (the socket is FIFO)."""
        with self.lock:
            self.barrier += 1
            want = self.barrier
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"HARNESS_BARRIER=%d" % want, self.path)
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.barrier_seen < want:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the fd store did not read its socket")
                self.lock.wait(left)

    def entries_copy(self):
        with self.lock:
            return [tuple(e) for e in self.entries]

    def close(self):
        self.stopping = True
        self.sock.close()
        with self.lock, self.unparked():
            for _, fd in self.entries:
                os.close(fd)
            self.entries = []
        if self.parking:
            for s in self.parking:
                s.close()

    # -- starting the service

    def spawn(self, argv, env=None, sockets=(), stdout=None, stderr=None, notify=True, inherit=True):
        """Starts argv as the unit's main process: sockets ((name, fd) of activation) and the
        store's fds as 3.., in that order; $NOTIFY_SOCKET unless notify is False. env adds to
        our environment, or replaces it when inherit is False."""
        with self.unparked():
            return self._spawn(argv, env, sockets, stdout, stderr, notify, inherit)

    def _spawn(self, argv, env, sockets, stdout, stderr, notify, inherit):
        with self.lock:
            passed = list(sockets) + [tuple(e) for e in self.entries]
        env = {k: v for k, v in {**(os.environ if inherit else {}), **(env or {})}.items()
               if k not in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "NOTIFY_SOCKET")}
        if notify:
            env["NOTIFY_SOCKET"] = self.path
        if passed:
            env["LISTEN_FDS"] = str(len(passed))
            env["LISTEN_FDNAMES"] = ":".join(name for name, _ in passed)
        sources = [fd for _, fd in passed]

        def as_systemd_passes_them():
            # Out of the way first: a source may sit where another one goes. Then 3.. and
            # nothing else (close_fds would want every one of 3.. open in the parent too).
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + len(sources)) for fd in sources]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i)
            os.closerange(3 + len(sources), 1 << 20)

        cmd = ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', *argv] if passed else list(argv)
        with self.lock:
            self.main_pid = "starting"
        proc = None
        try:
            proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr, close_fds=not passed,
                                    preexec_fn=as_systemd_passes_them if passed else None)
        finally:
            with self.lock:
                self.main_pid = proc.pid if proc else None  # sh execs brokerd: the same pid
                self.lock.notify_all()
        return proc


def brokerd_argv(d, agent_socket=None, admin_socket=None):
    """harness.Daemon d's command line."""
    return [harness.BROKERD, "--platform", d.platform_path, "--policy", d.policy_path, "--db", d.db,
            "--agent-socket", agent_socket or d.agent_socket, "--admin-socket", admin_socket or d.admin_socket,
            "--agent-group", "nogroup", "--log-target", "stderr", *d.extra_args]


def memfd_region_fds(pid, pool="gpu1"):
    """{region id: fd} of the memfds a process holds for pool."""
    out = {}
    base = "/proc/%d/fd" % pid
    for n in os.listdir(base):
        try:
            link = os.readlink(os.path.join(base, n))
        except OSError:
            continue
        m = re.fullmatch(r"/memfd:brokerd:%s:(\d+)( \(deleted\))?" % re.escape(pool), link)
        if m:
            out.setdefault(int(m.group(1)), int(n))
    return out


def store_name(region, pool="gpu1"):
    return "region-%d-%s" % (region, pool)


def holder_name(region, domain):
    """The store's name of a holder's pidfd: the domain escaped one to one ('_' '_u', ':' '_c', '+' '_p')."""
    return "holder-%d-%s" % (region, domain.replace("_", "_u").replace(":", "_c").replace("+", "_p"))
