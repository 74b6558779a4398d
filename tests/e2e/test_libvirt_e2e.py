#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""End to end through libvirt: two real guests share a region brokerd hands out.

Boots two transient TCG domains (machine pc, disk-less: tests/e2e/build-guest.sh), starts
brokerd with --backend libvirt, and drives a share through the RPC: the owner's mapping is
hot-plugged into guest A, the peer's into guest B, A writes a pattern over the region that B
verifies, B replies and A reads it; brokerd is killed with SIGKILL and restarted (the region
and both mappings must survive); then the owner revokes, B's agent releases on recall, the
devices leave both guests (libvirt's DEVICE_REMOVED) and the region is reclaimed with its
backing file. Last, a peer domain is destroyed while attached: libvirt's lifecycle event
revokes its attachment, and the region (no peer left) is reclaimed. `virsh dumpxml` is the independent witness of what is plugged where.

Needs root and BROKERD_E2E=1 (exit 77 otherwise). Starts virtlogd/libvirtd if no libvirtd
answers, and stops only what it started, by pid. BROKERD_E2E_GUEST: the guest cache dir.
"""
import json
import os
import secrets
import select
import signal
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

URI = "qemu:///system"
GUEST_DIR = os.environ.get("BROKERD_E2E_GUEST", "/e2e-guest")
SHM_DIR = "/dev/shm"  # where libvirt puts ivshmem-plain memory
REGION_SIZE = 1 << 20
T0 = time.monotonic()


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

    def __init__(self, name, rundir):
        self.name = name
        self.fifo = os.path.join(rundir, name + ".cmd")
        self.console = os.path.join(rundir, name + ".console")
        self.win = self.rout = None
        self.buf = b""

    def xml(self):
        return f"""<domain type='qemu'>
  <name>{self.name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{GUEST_DIR}/vmlinuz</kernel>
    <initrd>{GUEST_DIR}/initrd.gz</initrd>
    <cmdline>console=ttyS0 panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='{self.console}'/><target port='0'/></serial>
    <serial type='pipe'><source path='{self.fifo}'/><target port='1'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""

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

    def console_tail(self):
        try:
            with open(self.console, errors="replace") as f:
                return f.read()[-800:]
        except OSError:
            return "?"

    def has_alias(self, alias):
        return f"<alias name='{alias}'/>" in virsh("dumpxml", self.name).stdout

    def stop(self):
        for fd in (self.win, self.rout):
            if fd is not None:
                os.close(fd)
        self.win = self.rout = None
        virsh("destroy", self.name, check=False)


def started_daemons():
    """Starts virtlogd and libvirtd in the foreground if no libvirtd answers; returns their Popens."""
    procs = []
    if libvirt_up():
        return procs
    log("no libvirtd answering: starting virtlogd and libvirtd")
    for exe in ("virtlogd", "libvirtd"):
        procs.append(subprocess.Popen([exe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_for("libvirtd", libvirt_up, 30)
    return procs


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
    prefix = f"brokerd-e2e-{os.getpid()}"
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

        platform = {
            "memory": [{"name": "bank0", "base": 0, "size": "4GiB", "numa_node": 0}],
            "pools": [{"name": f"e2e{os.getpid()}", "base": "1GiB", "size": "64MiB", "numa_node": 0,
                       "granule": "4KiB", "backing": {"kind": "shm", "path": SHM_DIR}}],
            "devices": [{"name": "nic0", "owner": a.name, "dma_mask_bits": 64}],
        }
        policy = {
            "agents": [{"uid": 0, "domains": [a.name, b.name]}],
            "shares": [{"sharer": a.name, "device": "nic0", "peers": [b.name], "access": "rw"}],
        }
        d = harness.Daemon(policy=policy, extra_args=["--backend", "libvirt", "--libvirt-uri", URI])
        with open(d.platform_path, "w") as f:
            json.dump(platform, f)
        d.start()
        owner, peer = d.agent(), d.agent()
        assert owner.call("broker.info")["backend"] == "libvirt"
        owner.call("events.subscribe", {"domains": [a.name]})
        peer.call("events.subscribe", {"domains": [b.name]})

        # QEMU would abort on this size: refused before anything is recorded.
        try:
            owner.call("region.share", {"owner": a.name, "device": "nic0", "size": 3 << 20,
                                        "peers": [{"domain": b.name, "access": "rw"}]})
            raise AssertionError("a 3MiB share was accepted")
        except harness.RpcError as e:
            assert e.name == "size_unsupported", e
            assert "power-of-two" in e.error["message"], e.error
        log("3MiB share refused: size_unsupported")

        r = owner.call("region.share", {"owner": a.name, "device": "nic0", "size": REGION_SIZE,
                                        "peers": [{"domain": b.name, "access": "rw"}]})
        assert r["placement"] == "region" and r["size"] == REGION_SIZE, r
        assert "fd" not in r, r
        region = r["region"]
        alias = f"ua-brokerd-{region}"
        backing = os.path.join(SHM_DIR, f"brokerd-{r['pool']}-{region}")
        st = os.stat(backing)
        assert st.st_size == REGION_SIZE and st.st_mode & 0o777 == 0o600, oct(st.st_mode)
        assert a.has_alias(alias) and not b.has_alias(alias)
        log(f"region {region} shared; {alias} plugged into A; {backing} mode 0600")

        token = r["tokens"][0]["token"]
        att = peer.call("region.attach", {"domain": b.name, "token": token})
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
        # (restore() checks the file), and the guests keep their memory throughout.
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        d.start()
        owner, peer = d.agent(), d.agent()
        owner.call("events.subscribe", {"domains": [a.name]})
        peer.call("events.subscribe", {"domains": [b.name]})
        got = owner.call("region.get", {"region": region})
        assert got["state"] == "active" and got["peers"][0]["state"] == "attached", got
        assert a.has_alias(alias) and b.has_alias(alias)
        rc, out = b.run(f"shmtool verify {seed}")
        assert rc == 1 and "VERIFY BAD" in out, out  # B's reply is in there now
        rc, out = a.run("shmtool get 4096")
        assert rc == 0 and out == reply, out
        log("brokerd killed (SIGKILL) and restarted: region restored, both mappings intact")

        owner.call("region.revoke", {"owner": a.name, "region": region, "deadline_ms": 60000})
        recall = peer.wait_notification("region.recall", timeout=30)
        assert recall["params"]["region"] == region, recall
        peer.call("region.release", {"domain": b.name, "region": region})
        log("revoked; B's agent released on recall")
        owner.wait_notification("region.reclaimed", timeout=60)
        log("region reclaimed (after DEVICE_REMOVED from both guests)")
        try:
            owner.call("region.get", {"region": region})
            raise AssertionError(f"region {region} still live after reclaim")
        except harness.RpcError as e:
            assert e.name == "no_such_region", e
        # Completion came from libvirt's event, not from the detach call's return.
        text = d.read_log()
        for g in (a, b):
            assert f"removal of {alias} from {g.name} requested" in text, text
            assert f"libvirt: {alias} removed from {g.name}" in text, text
        assert not a.has_alias(alias) and not b.has_alias(alias)
        assert not os.path.exists(backing), backing
        for g in (a, b):
            rc, out = g.run("shmtool find")
            assert rc == 1, f"{g.name} still sees the device: {out}"
        log("alias gone from both live definitions and guests; backing file gone")

        # A peer domain that stops (libvirt's lifecycle event) loses its attachment at once;
        # with no peer left brokerd revokes the region itself, and A's device leaves too.
        r2 = owner.call("region.share", {"owner": a.name, "device": "nic0", "size": REGION_SIZE,
                                         "peers": [{"domain": b.name, "access": "rw"}]})
        alias2 = f"ua-brokerd-{r2['region']}"
        peer.call("region.attach", {"domain": b.name, "token": r2["tokens"][0]["token"]})
        assert a.has_alias(alias2) and b.has_alias(alias2)
        owner.notifications.clear()
        b.stop()
        reclaimed = owner.wait_notification("region.reclaimed", timeout=60)
        assert reclaimed["params"]["region"] == r2["region"], reclaimed
        assert f"libvirt domain {b.name} stopped" in d.read_log()
        assert not a.has_alias(alias2)
        assert not os.path.exists(os.path.join(SHM_DIR, f"brokerd-{r2['pool']}-{r2['region']}"))
        log(f"B destroyed while attached: region {r2['region']} revoked and reclaimed, A's device gone")
        failed = False
    finally:
        if d:
            rc = d.stop()
            logtext = d.read_log()
            if failed or rc != 0:
                print(logtext)
            if rc != 0:
                print(f"brokerd exited {rc}")
                failed = True
            d.cleanup()
        for g in (a, b):
            if failed and g.win is not None:
                print(f"--- {g.name} console ---\n{g.console_tail()}")
            g.stop()
        for f in os.listdir(SHM_DIR):
            if f.startswith(f"brokerd-e2e{os.getpid()}-"):
                os.unlink(os.path.join(SHM_DIR, f))
        shutil.rmtree(rundir, ignore_errors=True)
        for p in reversed(daemons):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    log("PASS" if not failed else "FAIL")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
