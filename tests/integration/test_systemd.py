# SPDX-License-Identifier: Apache-2.0
"""What systemd relies on, done the way systemd does it (systemd is not PID 1 here):
sd_notify READY/RELOADING/STOPPING on $NOTIFY_SOCKET, socket activation through
LISTEN_FDS/LISTEN_FDNAMES, and a clean stop on SIGTERM that leaves the database whole."""
import os
import signal
import socket
import sqlite3
import subprocess
import time
import unittest

from harness import BROKERD, Client, Daemon, main


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


if __name__ == "__main__":
    main()
