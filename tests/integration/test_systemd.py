# SPDX-License-Identifier: Apache-2.0
"""What systemd relies on, done the way systemd does it (systemd is not PID 1 here):
sd_notify READY/RELOADING/STOPPING on $NOTIFY_SOCKET, socket activation through
LISTEN_FDS/LISTEN_FDNAMES, and a clean stop on SIGTERM that leaves the database whole."""
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import unittest

from harness import BROKERCTL, BROKERD, Client, Daemon, main


class NotifySocket:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(10)

    def wait_for(self, key):
        """Returns the first datagram containing key (e.g. READY=1)."""
        while True:
            msg = self.sock.recv(4096).decode()
            if key in msg.split("\n"):
                return msg

    def close(self):
        self.sock.close()


class Notify(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.notify = NotifySocket(os.path.join(self.d.dir, "notify.sock"))
        os.environ["NOTIFY_SOCKET"] = self.notify.path
        os.environ["WATCHDOG_USEC"] = "200000"  # as systemd sets it for WatchdogSec=
        try:
            self.d.start()
        finally:
            del os.environ["NOTIFY_SOCKET"]
            del os.environ["WATCHDOG_USEC"]

    def tearDown(self):
        self.d.cleanup()
        self.notify.close()

    def test_ready_reload_stopping(self):
        ready = self.notify.wait_for("READY=1")
        self.assertIn("STATUS=serving", ready)
        # The loop pings the watchdog on its own, several times per period.
        for _ in range(3):
            self.notify.wait_for("WATCHDOG=1")
        self.d.signal(signal.SIGHUP)
        reloading = self.notify.wait_for("RELOADING=1")
        self.assertTrue(any(line.startswith("MONOTONIC_USEC=") for line in reloading.split("\n")))
        self.notify.wait_for("READY=1")

        # A share is in flight in the database when SIGTERM arrives: the stop is clean and
        # the database intact.
        c = self.d.agent()
        c.call("region.share", {"owner": "hw0", "device": "nic0", "size": 4096,
                                "peers": [{"domain": "vm1", "access": "rw"}]})
        os.close(c.take_fd())
        self.d.signal(signal.SIGTERM)
        self.notify.wait_for("STOPPING=1")
        self.assertEqual(self.d.stop(), 0)
        db = sqlite3.connect(self.d.db)
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        self.assertEqual(db.execute("SELECT state FROM regions").fetchall(), [("offered",)])
        db.close()


class Activation(unittest.TestCase):
    def test_named_fds_are_served(self):
        d = Daemon()
        try:
            listeners = {}
            for name in ("agent", "admin"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(os.path.join(d.dir, f"activated-{name}.sock"))
                s.listen(16)
                listeners[name] = s
            agent_fd, admin_fd = listeners["agent"].fileno(), listeners["admin"].fileno()

            def as_systemd_passes_them():
                os.dup2(agent_fd, 3)
                os.dup2(admin_fd, 4)

            log = open(d.log, "a")
            # LISTEN_PID must be the daemon's own pid: set it in the shell that execs it.
            proc = subprocess.Popen(
                ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', BROKERD,
                 "--platform", d.platform_path, "--policy", d.policy_path, "--db", d.db,
                 # paths that must NOT be created: the activated sockets replace them
                 "--agent-socket", os.path.join(d.dir, "unused-agent.sock"),
                 "--admin-socket", os.path.join(d.dir, "unused-admin.sock"),
                 "--log-target", "stderr"],
                env={**os.environ, "LISTEN_FDS": "2", "LISTEN_FDNAMES": "agent:admin"},
                pass_fds=(agent_fd, admin_fd), preexec_fn=as_systemd_passes_them, stdout=log, stderr=log)
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        agent = Client(os.path.join(d.dir, "activated-agent.sock"))
                        info = agent.call("broker.info", {})
                        break
                    except (ConnectionRefusedError, FileNotFoundError):
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise
                        time.sleep(0.05)
                self.assertFalse(info["admin"])
                admin = Client(os.path.join(d.dir, "activated-admin.sock"))
                self.assertTrue(admin.call("broker.info", {})["admin"])
                self.assertFalse(os.path.exists(os.path.join(d.dir, "unused-agent.sock")))
                self.assertFalse(os.path.exists(os.path.join(d.dir, "unused-admin.sock")))
                agent.close()
                admin.close()
            finally:
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=20), 0)
                log.close()
            # The activated socket files belong to systemd: brokerd leaves them in place.
            self.assertTrue(os.path.exists(os.path.join(d.dir, "activated-agent.sock")))
            for s in listeners.values():
                s.close()
        finally:
            d.cleanup()


SYSTEMD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "systemd")


def exposure(unit_path):
    """systemd-analyze's overall exposure of a unit file, offline (no systemd as PID 1 needed)."""
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit_path],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", p.stdout + p.stderr)
    if not m:
        raise AssertionError(f"no exposure in systemd-analyze's output:\n{p.stdout}\n{p.stderr}")
    return float(m.group(1)), m.group(2)


@unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
class Hardening(unittest.TestCase):
    def test_shipped_unit_is_safe(self):
        score, verdict = exposure(os.path.join(SYSTEMD_DIR, "brokerd.service"))
        self.assertLess(score, 1.0)
        self.assertEqual(verdict, "SAFE")

    def test_fd_store_is_sized_by_the_fd_limit(self):
        """One fd per memfd region in brokerd and one in the store: the store is as large as the
        fd limit that bounds live memfd regions (brokerd(8), FILE DESCRIPTOR STORE)."""
        with open(os.path.join(SYSTEMD_DIR, "brokerd.service")) as f:
            text = f.read()
        store = re.findall(r"^FileDescriptorStoreMax=(\d+)$", text, re.M)
        nofile = re.findall(r"^LimitNOFILE=(\d+)$", text, re.M)
        self.assertEqual(len(store), 1)
        self.assertEqual(store, nofile)

    def test_libvirt_drop_in_adds_only_what_it_says(self):
        """The drop-in for the libvirt backend, applied by systemd's own drop-in lookup."""
        tmp = tempfile.mkdtemp(prefix="brokerd-unit-")
        try:
            shutil.copy(os.path.join(SYSTEMD_DIR, "brokerd.service"), tmp)
            os.mkdir(os.path.join(tmp, "brokerd.service.d"))
            shutil.copy(os.path.join(SYSTEMD_DIR, "brokerd-libvirt.conf"), os.path.join(tmp, "brokerd.service.d"))
            score, _ = exposure(os.path.join(tmp, "brokerd.service"))
            # Three capabilities and @chown cost 0.6 at most (docs/security.md): still "OK".
            self.assertLessEqual(score, 1.0)
            with open(os.path.join(SYSTEMD_DIR, "brokerd-libvirt.conf")) as f:
                text = f.read()
            caps = re.findall(r"^CapabilityBoundingSet=(.*)$", text, re.M)
            self.assertEqual(caps, ["CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER"])
            self.assertIn("--backend libvirt", text)
        finally:
            shutil.rmtree(tmp)


MAN_PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "man", "brokerd.8")


@unittest.skipUnless(os.environ.get("BROKERD_VERSION"), "run by meson, which passes project()'s version")
class Version(unittest.TestCase):
    """One version, meson's project(): what the daemon, brokerctl, the pkg-config file and
    broker.info say."""

    def test_every_surface_says_projects_version(self):
        version = os.environ["BROKERD_VERSION"]
        for exe, name in ((BROKERD, "brokerd"), (BROKERCTL, "brokerctl")):
            p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
            self.assertEqual((p.returncode, p.stdout), (0, f"{name} {version}\n"))
        with open(os.environ["BROKERD_PKGCONFIG"]) as f:
            self.assertIn(f"\nVersion: {version}\n", f.read())
        d = Daemon().start()
        try:
            self.assertEqual(d.admin().call("broker.info", {})["version"], version)
        finally:
            d.cleanup()


class Flags(unittest.TestCase):
    """The daemon's flags: the limits and retention ones are taken in range and refused out of it,
    and every flag --help lists is in brokerd(8)."""

    def test_connection_and_retention_flags(self):
        d = Daemon(extra_args=["--max-connections", "64", "--max-connections-unknown-uid", "1",
                               "--retain-age", "7d", "--retain-regions", "0", "--retain-audit", "500"])
        try:
            d.start()
            self.assertEqual(d.agent().call("broker.info", {})["backend"], "memfd")
        finally:
            d.cleanup()
        for args, message in ((["--max-connections", "0"], "--max-connections takes a number from 1"),
                              (["--max-connections-unknown-uid", "x"], "--max-connections-unknown-uid takes"),
                              (["--retain-age", "soon"], "--retain-age takes a duration"),
                              (["--retain-regions", "-1"], "--retain-regions takes a number from 0"),
                              (["--retain-audit", "99999999999999999999"], "--retain-audit takes"),
                              (["--backend", "xen"], "--backend takes memfd or libvirt")):
            p = subprocess.run([BROKERD, *args], capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn(message, p.stderr, args)

    def test_help_flags_are_documented(self):
        p = subprocess.run([BROKERD, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        flags = set(re.findall(r"--[a-z][a-z-]+", p.stdout))
        self.assertIn("--retain-age", flags)
        with open(MAN_PAGE) as f:
            man = f.read().replace("\\-", "-")
        self.assertEqual(sorted(f for f in flags if f not in man), [])


if __name__ == "__main__":
    main()
