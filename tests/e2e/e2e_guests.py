# SPDX-License-Identifier: Apache-2.0
"""What the e2e tests share: libvirt guests with a shell on their second serial port, virsh,
libvirtd started when none answers, brokerd under the fd store, and the doorbell witnesses seen
from outside (a QEMU's eventfds, a guest's doorbell interrupts, chantool's ids).

Standard library only at import time (tests/crash/churn-libvirt.py loads it through
test_libvirt_e2e.py before the harness is on the path); harness and fdstore are imported by
the functions that need them.
"""
import ctypes
import os
import platform
import re
import select
import shutil
import signal
import string
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(HERE, "..", "integration")

URI = "qemu:///system"
GUEST_DIR = os.environ.get("BROKERD_E2E_GUEST", "/e2e-guest")
SHM_DIR = "/dev/shm"  # where libvirt puts ivshmem-plain memory
QEMU_LOG_DIR = "/var/log/libvirt/qemu"  # libvirt's log of each domain, named after it
QEMU_PID_DIR = "/run/libvirt/qemu"  # libvirt's <domain>.pid of each running domain
T0 = time.monotonic()


def domain_prefix(default):
    """The start of the test's domain names: $BROKERD_E2E_DOMAIN_PREFIX (so that several people
    booting guests on one host never collide), else default; the pid follows."""
    return "%s-%d" % (os.environ.get("BROKERD_E2E_DOMAIN_PREFIX") or default, os.getpid())


def log(msg):
    print(f"[{time.monotonic() - T0:7.2f}s] {msg}", flush=True)


def virsh(*args, check=True):
    p = subprocess.run(["virsh", "-q", "-c", URI, *args], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {p.stderr.strip()}")
    return p


def libvirt_up():
    try:
        return virsh("uri", check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def wait_for(what, pred, timeout):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Guest:
    """A transient libvirt domain with a shell on its second serial port (two FIFOs)."""

    def __init__(self, name, rundir, max_vcpus=None):
        self.name = name
        self.max_vcpus = max_vcpus  # None: domain.xml's
        self.fifo = os.path.join(rundir, name + ".cmd")
        self.console = os.path.join(rundir, name + ".console")
        self.win = self.rout = None
        self.buf = b""

    def xml(self):
        # domain.xml is the guests' shape, shared with bench/run-mapping-bench.sh.
        with open(os.path.join(HERE, "domain.xml")) as f:
            template = string.Template(f.read())
        xml = template.substitute(name=self.name, guest=GUEST_DIR, cmdline="console=ttyS0 no_timer_check panic=-1",
                                  console=self.console, fifo=self.fifo)
        if self.max_vcpus:
            xml = re.sub(r"<vcpu\b[^>]*>\d+</vcpu>", f"<vcpu>{self.max_vcpus}</vcpu>", xml)
        return xml

    def start(self):
        for suffix in (".in", ".out"):
            os.mkfifo(self.fifo + suffix, 0o600)
        path = self.fifo + ".xml"
        with open(path, "w") as f:
            f.write(self.xml())
        virsh("create", path)
        # QEMU holds both FIFOs open, so neither open blocks.
        self.win = os.open(self.fifo + ".in", os.O_WRONLY | os.O_CLOEXEC)
        self.rout = os.open(self.fifo + ".out", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)

    def read_line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no answer in time (console: {self.console_tail()})")
            r, _, _ = select.select([self.rout], [], [], left)
            if r:
                self.buf += os.read(self.rout, 4096)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")

    def wait_ready(self, timeout=180):
        deadline = time.monotonic() + timeout
        while self.read_line(deadline) != "@@READY":
            pass

    def run(self, cmd, timeout=60):
        """Runs cmd in the guest; returns (status, output)."""
        os.write(self.win, (cmd + "\n").encode())
        deadline = time.monotonic() + timeout
        out = []
        while True:
            line = self.read_line(deadline)
            if line.startswith("@@RC "):
                return int(line[5:]), "\n".join(out)
            out.append(line)

    def check(self, cmd, timeout=60):
        """Runs cmd in the guest; returns its output; fails on a non-zero status."""
        status, out = Guest.run(self, cmd, timeout)
        assert status == 0, f"{self.name}: `{cmd}` failed ({status}): {out}"
        return out

    def console_tail(self):
        try:
            with open(self.console, errors="replace") as f:
                return f.read()[-800:]
        except OSError:
            return "?"

    def has_alias(self, alias):
        return f"<alias name='{alias}'/>" in virsh("dumpxml", self.name).stdout

    def regions(self):
        """Region ids of brokerd's shmem devices in the live XML (none when not running)."""
        p = virsh("dumpxml", self.name, check=False)
        if p.returncode != 0:
            return set()
        return {int(m) for m in re.findall(r"<shmem\b.*?<alias name='ua-brokerd-(\d+)'/>.*?</shmem>", p.stdout, re.S)}

    def running(self):
        p = virsh("domstate", self.name, check=False)
        return p.returncode == 0 and p.stdout.strip() in ("running", "paused")

    def qemu_pid(self):
        """The pid of this domain's QEMU, as libvirt records it."""
        with open(os.path.join(QEMU_PID_DIR, self.name + ".pid")) as f:
            return int(f.read().strip())

    def qemu_log_tail(self, n=3):
        """The last lines of libvirt's log of this domain ("shutting down, reason=crashed")."""
        try:
            with open(os.path.join(QEMU_LOG_DIR, self.name + ".log"), errors="replace") as f:
                return " | ".join(line.strip() for line in f.readlines()[-n:])
        except OSError:
            return "?"

    def remove_log(self):
        """libvirt's log of this domain (QEMU's command line and stderr), kept only on failure."""
        try:
            os.unlink(os.path.join(QEMU_LOG_DIR, self.name + ".log"))
        except FileNotFoundError:
            pass

    def stop(self):
        for fd in (self.win, self.rout):
            if fd is not None:
                os.close(fd)
        self.win = self.rout = None
        virsh("destroy", self.name, check=False)


def started_daemons():
    """Starts virtlogd and libvirtd in the foreground if no libvirtd answers; returns their Popens."""
    procs = {}
    if libvirt_up():
        return procs
    log("no libvirtd answering: starting virtlogd and libvirtd")
    for exe in ("virtlogd", "libvirtd"):
        procs[exe] = subprocess.Popen([exe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("libvirtd", libvirt_up, 30)
    return procs


def stop_proc(p):
    p.terminate()
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def shm_platform(pool, owner):
    """The platform of the libvirt tests: one shm pool in SHM_DIR (64 MiB, 4 KiB granules), nic0
    driven by the domain owner."""
    return {
        "memory": [{"name": "bank0", "base": 0, "size": "4GiB", "numa_node": 0}],
        "pools": [{"name": pool, "base": "1GiB", "size": "64MiB", "numa_node": 0,
                   "granule": "4KiB", "backing": {"kind": "shm", "path": SHM_DIR}}],
        "devices": [{"name": "nic0", "owner": owner, "dma_mask_bits": 64}],
    }


def tear_down(d, guests, pool, rundir, daemons, failed):
    """Everything a test started, whatever happened: brokerd stopped (its log printed on failure or
    on an unclean exit) and its files removed, the guests destroyed (their consoles printed on
    failure, libvirt's logs kept only then), the pool's backing files and the run dir removed,
    libvirtd and virtlogd stopped if the test started them. Returns whether the test failed."""
    if d:
        rc = d.stop()
        if failed or rc != 0:
            print(d.read_log())
        if rc != 0:
            print(f"brokerd exited {rc}")
            failed = True
        d.cleanup()
    for g in guests:
        if failed and g.win is not None:
            print(f"--- {g.name} console ---\n{g.console_tail()}")
        g.stop()
        if not failed:
            g.remove_log()
    for f in os.listdir(SHM_DIR):
        if f.startswith(f"brokerd-{pool}-"):
            os.unlink(os.path.join(SHM_DIR, f))
    shutil.rmtree(rundir, ignore_errors=True)
    for name in ("libvirtd", "virtlogd"):
        if name in daemons:
            stop_proc(daemons[name])
    log("PASS" if not failed else "FAIL")
    return failed


def build_guest():
    """The (cached) guest in GUEST_DIR: the kernel is kept, the module and initramfs rebuilt."""
    subprocess.run([os.path.join(HERE, "build-guest.sh"), GUEST_DIR], check=True, timeout=900,
                   stdout=subprocess.DEVNULL)


# ---- doorbells seen from outside

KCMP_FILE = 0
KCMP_SYSCALL = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
_libc = ctypes.CDLL(None, use_errno=True)


def eventfd_numbers(pid):
    """The fd numbers of a process's eventfds (a QEMU holds one per vector of every doorbell peer)."""
    out = []
    d = f"/proc/{pid}/fd"
    for name in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, name)) == "anon_inode:[eventfd]":
                out.append(int(name))
        except OSError:
            pass
    return out


def eventfds(pid):
    return len(eventfd_numbers(pid))


def shared_eventfds(pid1, pid2):
    """How many of pid1's eventfds are the very eventfds pid2 holds too (kcmp KCMP_FILE): what links
    two QEMUs of one doorbell region, each holding the other's vectors and its own."""
    assert KCMP_SYSCALL is not None, platform.machine()
    theirs = eventfd_numbers(pid2)
    n = 0
    for fd in eventfd_numbers(pid1):
        n += any(_libc.syscall(KCMP_SYSCALL, pid1, pid2, KCMP_FILE, fd, other) == 0 for other in theirs)
    return n


def vector_interrupts(guest, device="ivshmem-doorbell0"):
    """Interrupts of each vector of a doorbell device in guest so far, summed over CPUs (the
    driver names its interrupts after the device, one line per vector in order); [] when the
    guest has no such device."""
    out = []
    for line in Guest.check(guest, "cat /proc/interrupts").splitlines():
        if line.rstrip().endswith(" " + device):
            out.append(sum(int(f) for f in line.split()[1:] if f.isdigit()))
    return out


def doorbell_interrupts(guest, device="ivshmem-doorbell0"):
    """Interrupts of a doorbell device's vectors in guest so far, summed over CPUs and vectors."""
    return sum(vector_interrupts(guest, device))


def chantool_info(guest, device="ivshmem-doorbell0"):
    """(own id, vectors, size) of a doorbell device, through the driver (IVPosition)."""
    out = Guest.check(guest, f"CHANTOOL_DEVICE=/dev/{device} chantool info")
    m = re.fullmatch(r"ID (\d+) VECTORS (\d+) SIZE (\d+)", out)
    assert m, f"{guest.name}: chantool info: {out}"
    return tuple(int(x) for x in m.groups())


def doorbell_devices(guest):
    """The guest's doorbell devices by name, with (own id, vectors, size)."""
    names = Guest.check(guest, "ls /dev | grep '^ivshmem-doorbell' || true").split()
    return {n: chantool_info(guest, n) for n in names}


UNIX_LISTENING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's Flags


def unix_sockets(pid, directory):
    """A process's unix sockets bound under directory: {"socket:[inode]" (its fd's link): (path,
    listening)}, from /proc/net/unix, where an accepted connection shows its listener's path."""
    bound = {}
    prefix = directory.rstrip("/") + "/"
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[7].startswith(prefix):
                bound["socket:[%s]" % fields[6]] = (fields[7], bool(int(fields[3], 16) & UNIX_LISTENING))
    out = {}
    d = f"/proc/{pid}/fd"
    for name in os.listdir(d):
        try:
            link = os.readlink(os.path.join(d, name))
        except OSError:
            continue
        if link in bound:
            out[link] = bound[link]
    return out


# ---- brokerd under the fd store

def stored_daemon(policy, extra_args, store_dir=None, max_fds=4096):
    """A harness.Daemon whose start() runs brokerd as systemd's unit would, under an fd store
    (tests/integration/fdstore.py): a SIGKILLed brokerd comes back with what it kept there.
    The store is d.store; d.cleanup() closes it."""
    if INTEGRATION not in sys.path:
        sys.path.insert(0, INTEGRATION)
    import fdstore
    import harness

    class StoredDaemon(harness.Daemon):
        def __init__(self):
            super().__init__(policy=policy, extra_args=extra_args)
            self.store = fdstore.FdStore(store_dir or self.dir, max_fds=max_fds)

        def launch(self, env):
            return self.store.spawn(fdstore.brokerd_argv(self), env=env, stdout=self.logf, stderr=self.logf)

        def kill(self):
            """SIGKILL, as a crash: returns the exit status (-SIGKILL)."""
            return self.stop(signal.SIGKILL)

        def cleanup(self):
            super().cleanup()
            self.store.close()

    return StoredDaemon()
