#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""brokerd's ivshmem server (brokerd/backend/ivshmem-server.h) against real QEMU.

No libvirt and no guest kernel: tests/e2e/ivshmem-server-harness runs the server on a socket,
and bare QEMUs (TCG, stopped with -S) hot-plug ivshmem-doorbell over QMP the way libvirt does
(chardev-add of a socket client, then device_add with vectors=2 and ioeventfd):

1. an expected QEMU A is admitted: device_add succeeds, A holds the group's memfd and gains its
   own 2 eventfds;
2. a second expected QEMU B is admitted: A's eventfds grow by 2 (B's vectors);
3. remove_peer(B): A is sent peer-gone and closes B's eventfds (back to the count of step 1);
4. an unexpected QEMU X (no expectation for its pid; device_add 0.5 s after chardev-add, the gap
   that wedged QEMU when a server refused by closing) fails device_add with "server sent version
   -1", stays responsive (query-status) and does not spin; the refusal is reported with its pid.

Needs root, qemu-system-x86_64 and BROKERD_E2E=1 (exit 77 otherwise). Stops every process it
started, by pid.
"""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_guests import log, wait_for  # noqa: E402

QEMU = "qemu-system-x86_64"
REGION_SIZE = 1 << 20
VECTORS = 2


class Qemu:
    """A bare, stopped TCG QEMU with a QMP socket (extra: more arguments, e.g. a kernel to boot)."""

    def __init__(self, name, rundir, extra=()):
        self.name = name
        self.qmp_path = os.path.join(rundir, name + ".qmp")
        self.proc = subprocess.Popen(
            [QEMU, "-machine", "pc,accel=tcg", "-S", "-nodefaults", "-display", "none", "-m", "64",
             "-name", name, "-qmp", f"unix:{self.qmp_path},server=on,wait=off", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(os.path.join(rundir, name + ".log"), "w"))
        self.pid = self.proc.pid
        try:
            # The socket file exists from bind(), before QEMU listens: retry a refused connect.
            self.sock = None
            wait_for(f"{name}'s QMP socket", self._connect_qmp, 10)
            self.file = self.sock.makefile("rwb", buffering=0)
            self.sock.settimeout(30)
            json.loads(self.file.readline())  # the greeting
            self.qmp("qmp_capabilities")
        except BaseException:
            self.stop()
            raise

    def _connect_qmp(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.qmp_path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return False
        self.sock = sock
        return True

    def qmp(self, execute, timeout=30, **arguments):
        """The command's return value; raises QmpError with QEMU's message on error."""
        self.sock.settimeout(timeout)
        self.file.write(json.dumps({"execute": execute, "arguments": arguments}).encode() + b"\n")
        while True:
            line = self.file.readline()
            if not line:
                raise AssertionError(f"{self.name}: QMP closed")
            reply = json.loads(line)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QmpError(reply["error"].get("desc", ""))

    def attach_doorbell(self, path, gap=0.0, ioeventfd=True):
        """What libvirt sends for <shmem><model type='ivshmem-doorbell'/>: two monitor commands."""
        self.qmp("chardev-add", id="charua-dbell",
                 backend={"type": "socket", "data": {"addr": {"type": "unix", "data": {"path": path}}, "server": False}})
        time.sleep(gap)
        self.qmp("device_add", driver="ivshmem-doorbell", id="ua-dbell", chardev="charua-dbell",
                 vectors=VECTORS, ioeventfd=ioeventfd)

    def chardev_free(self, chardev="charua-dbell"):
        """chardev-remove: True once the chardev is gone (its device released it), else False."""
        try:
            self.qmp("chardev-remove", id=chardev)
            return True
        except QmpError:
            return False

    def fd_targets(self):
        out = []
        d = f"/proc/{self.pid}/fd"
        for n in os.listdir(d):
            try:
                out.append(os.readlink(os.path.join(d, n)))
            except OSError:
                pass
        return out

    def eventfds(self):
        return sum(1 for t in self.fd_targets() if t == "anon_inode:[eventfd]")

    def cpu_ticks(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


class QmpError(Exception):
    pass


class Harness:
    def __init__(self, binary, path):
        self.proc = subprocess.Popen([binary, path, str(REGION_SIZE), str(VECTORS), "0"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        self.buf = ""
        self.expect_line("ready")

    def read_line(self, timeout=10):
        deadline = time.monotonic() + timeout
        while "\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("harness: no line in time")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096).decode()
                if not chunk:
                    raise AssertionError("harness exited")
                self.buf += chunk
        line, self.buf = self.buf.split("\n", 1)
        log(f"harness: {line}")
        return line

    def expect_line(self, want):
        line = self.read_line()
        assert line == want, f"harness said {line!r}, expected {want!r}"

    def command(self, cmd, *reports):
        """Runs cmd; the reports its callbacks print come before its "ok"."""
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        for r in reports:
            self.expect_line(r)
        self.expect_line("ok")

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


def attach_refused(harness, qemu, path, gap=0.0):
    """qemu's doorbell attach fails with "server sent version -1"; the harness reports its pid."""
    try:
        qemu.attach_doorbell(path, gap=gap)
        raise AssertionError(f"{qemu.name}'s device_add succeeded")
    except QmpError as e:
        assert "server sent version -1" in str(e), str(e)
        log(f"{qemu.name} refused: {e}")
    refusal = harness.read_line().split()
    assert refusal[:2] == ["refused", str(qemu.pid)] and refusal[3] == "unexpected", refusal


def run(rundir, binary):
    path = os.path.join(rundir, "group.sock")
    harness = Harness(binary, path)
    started = [harness]
    try:
        st = os.stat(path)
        assert st.st_mode & 0o777 == 0o660 and st.st_uid == 0 and st.st_gid == 0, oct(st.st_mode)
        for n in ("ivshm-a", "ivshm-b", "ivshm-x"):
            started.append(Qemu(n, rundir))
        a, b, x = started[1:]

        # 1. A is expected and admitted.
        base_a = a.eventfds()
        harness.command(f"expect dom-a {a.pid}")
        a.attach_doorbell(path)
        harness.expect_line("joined 0 dom-a")
        assert any(t.startswith("/memfd:ivshmem-harness") for t in a.fd_targets()), "A has no memfd"
        wait_for("A's own 2 eventfds", lambda: a.eventfds() == base_a + VECTORS, 10)
        log(f"A admitted: eventfds {base_a} -> {a.eventfds()}")

        # 2. B joins: A gets B's vectors.
        harness.command(f"expect dom-b {b.pid}")
        b.attach_doorbell(path)
        harness.expect_line("joined 1 dom-b")
        wait_for("B's vectors in A", lambda: a.eventfds() == base_a + 2 * VECTORS, 10)
        log(f"B admitted: A's eventfds -> {a.eventfds()}")
        harness.command("ring 0 1")

        # 3. remove_peer(B): peer-gone to A, which closes B's eventfds.
        harness.command("remove 1", "gone 1 dom-b removed")
        wait_for("A to drop B's eventfds", lambda: a.eventfds() == base_a + VECTORS, 10)
        log(f"B removed: A's eventfds -> {a.eventfds()}")

        # 4. X was never expected: refused by -1 and held, and it stays healthy.
        attach_refused(harness, x, path, gap=0.5)
        assert x.qmp("query-status", timeout=1)["status"] == "prelaunch"
        ticks = x.cpu_ticks()
        time.sleep(1)
        spent = x.cpu_ticks() - ticks
        hz = os.sysconf("SC_CLK_TCK")
        assert spent < hz // 2, f"X used {spent} ticks of CPU in 1 s: spinning"
        assert x.qmp("query-status", timeout=1)["status"] == "prelaunch"
        x.qmp("chardev-remove", id="charua-dbell")
        assert x.proc.poll() is None and a.proc.poll() is None and b.proc.poll() is None
        log("X responsive after the refusal, not spinning")
    finally:
        for p in reversed(started):
            p.stop()


def main(run=run, rundir_prefix="brokerd-ivshmem-e2e-"):
    if os.geteuid() != 0 or os.environ.get("BROKERD_E2E") != "1":
        print("skipped: needs root and BROKERD_E2E=1")
        return 77
    if not shutil.which(QEMU):
        print(f"skipped: no {QEMU} (scripts/setup-e2e installs it)")
        return 77
    binary = os.environ["IVSHMEM_HARNESS"]
    rundir = tempfile.mkdtemp(prefix=rundir_prefix)
    try:
        run(rundir, binary)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
