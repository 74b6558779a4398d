# SPDX-License-Identifier: Apache-2.0
"""The grant lifecycle against the real daemon: sockets, fds, notifications, brokerctl,
the client library (brokerd-agent), restarts and policy reloads."""
import glob
import json
import mmap
import os
import signal
import subprocess
import time
import unittest

from harness import BROKERCTL, BROKERD, EXAMPLES, POLICY, DaemonTest, RpcError, main


class Lifecycle(DaemonTest):
    def test_share_attach_read_revoke_release_reclaim(self):
        owner = self.d.agent()
        owner.call("events.subscribe", {"domains": ["hw0"]})
        r = self.share(owner, size=65536, label="rx ring")
        self.assertEqual(r["placement"], "region")
        region, token = r["region"], r["tokens"][0]["token"]
        fd = owner.take_fd()
        mem = mmap.mmap(fd, r["size"], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        mem[:23] = b"hello from hw0's NIC!\x00\x00"

        # The peer is a separate process using the client library.
        peer = self.d.spawn_agent("attach", "--domain", "vm1", "--token", token, "--read", "64",
                                  "--write", "ack from vm1", "--hold", "--release-on-recall")
        owner.wait_notification("region.attached")
        deadline = time.monotonic() + 10
        while mem[4096:4108] != b"ack from vm1" and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(mem[4096:4108], b"ack from vm1")

        listing = self.d.brokerctl("list")
        self.assertIn(str(region), listing.stdout)
        self.assertIn("active", listing.stdout)
        shown = json.loads(self.d.brokerctl("--json", "show", str(region)).stdout)
        self.assertEqual(shown["state"], "active")
        self.assertEqual(shown["label"], "rx ring")

        self.d.brokerctl("revoke", str(region), "--deadline", "10s")
        out, err = peer.communicate(timeout=20)
        self.assertEqual(peer.returncode, 0, err)
        self.assertIn("read: hello from hw0's NIC!", out)
        self.assertIn(f"recall region={region}", out)
        self.assertIn(f"released region={region}", out)
        owner.wait_notification("region.released")
        owner.wait_notification("region.reclaimed")
        gone = self.d.brokerctl("show", str(region), check=False)
        self.assertEqual(gone.returncode, 1)
        self.assertIn("no_such_region", gone.stderr)
        # The range was scrubbed: the owner's stale view reads zeros.
        self.assertEqual(mem[:23], b"\x00" * 23)
        mem.close()
        os.close(fd)

    def test_ro_attach_refuses_writable_mapping(self):
        owner = self.d.agent()
        r = self.share(owner, peers=(("vm2", "ro"),))
        os.close(owner.take_fd())
        p = self.d.run_agent("attach", "--domain", "vm2", "--token", r["tokens"][0]["token"], "--expect-ro")
        self.assertIn("access=ro", p.stdout)
        self.assertIn("ro-enforced", p.stdout)

        # And through the raw protocol: the fd cannot be mapped writable.
        r = self.share(owner, peers=(("vm2", "ro"),))
        os.close(owner.take_fd())
        peer = self.d.agent()
        a = peer.call("region.attach", {"domain": "vm2", "token": r["tokens"][0]["token"]})
        self.assertEqual(a["access"], "ro")
        fd = peer.take_fd()
        with self.assertRaises(PermissionError):
            mmap.mmap(fd, a["size"], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        mmap.mmap(fd, a["size"], mmap.MAP_SHARED, mmap.PROT_READ).close()
        os.close(fd)

    def test_tokens_once_and_for_their_domain_only(self):
        owner = self.d.agent()
        r = self.share(owner)
        os.close(owner.take_fd())
        token = r["tokens"][0]["token"]
        c = self.d.agent()
        with self.assertRaises(RpcError) as e:
            c.call("region.attach", {"domain": "vm2", "token": token})
        self.assertEqual(e.exception.name, "wrong_domain")
        c.call("region.attach", {"domain": "vm1", "token": token})
        os.close(c.take_fd())
        with self.assertRaises(RpcError) as e:
            c.call("region.attach", {"domain": "vm1", "token": token})
        self.assertEqual(e.exception.name, "token_used")

    def test_bounce_and_route_lookup(self):
        c = self.d.agent()
        self.assertEqual(c.call("route.lookup", {"device": "nic0", "domain": "vm2"})["route"], "none")
        r = self.share(c, size="65MiB", peers=(("vm2", "ro"),))
        self.assertEqual(r["placement"], "bounce")
        self.assertTrue(r["reason"])
        self.assertIn(f"brokerd: bounce buffers on nic0: {r['reason']}", self.d.read_log())
        route = c.call("route.lookup", {"device": "nic0", "domain": "vm2"})
        self.assertEqual(route["route"], "bounce")
        r = self.share(c, size="1MiB", peers=(("vm2", "ro"),))
        os.close(c.take_fd())
        route = c.call("route.lookup", {"device": "nic0", "domain": "vm2"})
        self.assertEqual(route["route"], "region")
        self.assertEqual(route["region"], r["region"])

    def test_deadline_forces_revoke(self):
        owner = self.d.agent()
        r = self.share(owner)
        os.close(owner.take_fd())
        peer = self.d.agent()
        peer.call("events.subscribe", {"domains": ["vm1"]})
        peer.call("region.attach", {"domain": "vm1", "token": r["tokens"][0]["token"]})
        fd = peer.take_fd()
        owner.call("region.revoke", {"owner": "hw0", "region": r["region"], "deadline_ms": 300})
        recall = peer.wait_notification("region.recall")
        self.assertEqual(recall["params"]["region"], r["region"])
        # The peer ignores the recall, but drops its fd: at the deadline it is revoked, and since
        # nothing of its process reaches the memory any more, the region is reclaimed. (A peer that
        # keeps its fd or mapping keeps the region quarantined: test_revocation.py.)
        os.close(fd)
        peer.wait_notification("region.revoked", timeout=10)
        peer.wait_notification("region.reclaimed", timeout=10)
        with self.assertRaises(RpcError) as e:
            peer.call("region.get", {"region": r["region"]})
        self.assertEqual(e.exception.name, "no_such_region")

    def test_admin_views(self):
        c = self.d.agent()
        self.share(c, size="2MiB")
        os.close(c.take_fd())
        for verb in ("status", "domains", "pools", "audit"):
            p = self.d.brokerctl(verb)
            self.assertTrue(p.stdout.strip(), verb)
            j = json.loads(self.d.brokerctl("--json", verb).stdout)
            self.assertIsInstance(j, dict)
        audit = json.loads(self.d.brokerctl("--json", "audit").stdout)
        self.assertIn("share", [e["action"] for e in audit["entries"]])
        a = self.d.admin()
        for method in ("admin.domains", "admin.pools", "admin.stats", "broker.info"):
            a.call(method, {})
        a.call("admin.audit", {"limit": 5})

    def test_reconcile_with_a_backend_that_cannot_be_surveyed(self):
        """memfd mappings are fds held by processes: nothing to compare, all zero (schema-checked)."""
        a = self.d.admin()
        got = a.call("admin.reconcile", {})
        self.assertEqual(got, {"backend": "memfd", "checked": 0, "repaired": 0, "revoked": 0,
                               "completed": 0, "detached": 0})
        with self.assertRaises(RpcError) as e:
            a.call("admin.reconcile", {"domain": "vm1"})
        self.assertEqual(e.exception.code, -32602)
        with self.assertRaises(RpcError) as e:
            self.d.agent().call("admin.reconcile", {})
        self.assertEqual(e.exception.name, "forbidden")
        out = self.d.brokerctl("reconcile").stdout
        self.assertIn("memfd", out)
        self.assertEqual(json.loads(self.d.brokerctl("--json", "reconcile").stdout)["backend"], "memfd")

    def test_unplug_options_are_checked(self):
        for args, message in ((["--unplug-escalation", "halt"], "report, pause (stop) or destroy (kill)"),
                              (["--unplug-grace", "0"], "from 1ms to 24h"),
                              (["--unplug-grace", "25h"], "from 1ms to 24h"),
                              (["--unplug-grace", "soon"], "from 1ms to 24h"),
                              (["--qemu-user", ""], "takes a user name")):
            p = subprocess.run([BROKERD, *args], capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn(message, p.stderr, args)


    def test_brokerctl_events_follows_notifications(self):
        events = subprocess.Popen([BROKERCTL, "--socket", self.d.admin_socket, "--json", "events"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            c = self.d.agent()
            # events subscribes before printing anything; give it a moment, then act.
            deadline = time.monotonic() + 10
            while self.d.admin().call("admin.stats", {})["subscribers"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            r = self.share(c)
            os.close(c.take_fd())
            c.call("region.revoke", {"owner": "hw0", "region": r["region"], "deadline_ms": 0})
            seen = []
            while "region.reclaimed" not in seen:
                line = events.stdout.readline()
                self.assertTrue(line, "brokerctl events ended early")
                seen.append(json.loads(line)["method"])
        finally:
            events.send_signal(signal.SIGINT)
            events.communicate(timeout=10)
        self.assertEqual(events.returncode, 0)


class OfflineCheck(unittest.TestCase):
    def test_check_platform_and_policy(self):
        for kind in ("platform", "policy"):
            p = subprocess.run([BROKERCTL, "check", kind, os.path.join(EXAMPLES, f"{kind}.json")],
                               capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        broken = os.path.join(EXAMPLES, "broken", "platform-unaligned-pool-base.json")
        if not os.path.exists(broken):
            broken = sorted(f for f in glob.glob(os.path.join(EXAMPLES, "broken", "platform-*.json")))[0]
        expect = json.load(open(broken[:-5] + ".expect"))
        p = subprocess.run([BROKERCTL, "check", "platform", broken], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn(expect["loader_path"], p.stdout + p.stderr)
        p = subprocess.run([BROKERCTL, "check", "nonsense", "x"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)


class Restart(DaemonTest):
    def test_live_regions_survive_and_tokens_stay_single_use(self):
        c = self.d.agent()
        r1 = self.share(c, peers=(("vm1", "rw"),))
        fd = c.take_fd()
        with mmap.mmap(fd, r1["size"], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[:7] = b"durable"
        os.close(fd)
        r2 = self.share(c, peers=(("vm2", "ro"),))
        os.close(c.take_fd())
        c.call("region.attach", {"domain": "vm2", "token": r2["tokens"][0]["token"]})
        os.close(c.take_fd())

        self.assertEqual(self.d.restart(), 0)

        c = self.d.agent()
        self.assertEqual(c.call("region.get", {"region": r1["region"]})["state"], "offered")
        self.assertEqual(c.call("region.get", {"region": r2["region"]})["state"], "active")
        a = c.call("region.attach", {"domain": "vm1", "token": r1["tokens"][0]["token"]})
        fd = c.take_fd()
        with mmap.mmap(fd, a["size"], mmap.MAP_SHARED, mmap.PROT_READ) as m:
            self.assertEqual(m[:7], b"durable")
        os.close(fd)
        with self.assertRaises(RpcError) as e:
            c.call("region.attach", {"domain": "vm1", "token": r1["tokens"][0]["token"]})
        self.assertEqual(e.exception.name, "token_used")
        with self.assertRaises(RpcError) as e:
            c.call("region.attach", {"domain": "vm2", "token": r2["tokens"][0]["token"]})
        self.assertEqual(e.exception.name, "token_used")


class Reload(DaemonTest):
    def test_sighup_good_and_bad_policy(self):
        c = self.d.agent()
        self.share(c)
        os.close(c.take_fd())

        # A broken policy: refused, the old one stays.
        self.d.write_policy('{"agents": [], "shares": [{"sharer": "hw0"}]}')
        self.d.signal(signal.SIGHUP)
        time.sleep(0.5)
        self.share(c)
        os.close(c.take_fd())
        self.assertIn("previous policy stays", self.d.read_log())

        # A good one that no longer allows nic0 -> vm1.
        policy = json.loads(json.dumps(POLICY))
        policy["shares"] = [s for s in policy["shares"] if s["peers"] != ["vm1"]]
        self.d.write_policy(policy)
        self.d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "policy reloaded" not in self.d.read_log() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.assertRaises(RpcError) as e:
            self.share(c)
        self.assertEqual(e.exception.name, "forbidden")

    def test_admin_reload_reports_diagnostics(self):
        self.d.write_policy('{"agents": [], "shares": [{"sharer": "hw0", "device": "nic0", "peers": ["vm1"], "access": "rx"}]}')
        a = self.d.admin()
        with self.assertRaises(RpcError) as e:
            a.call("admin.reload", {})
        self.assertEqual(e.exception.name, "invalid_request")
        self.assertTrue(any("shares[0].access" in d for d in e.exception.error["data"]["diagnostics"]))
        p = self.d.brokerctl("reload", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("shares[0].access", p.stdout + p.stderr)


class LogLevels(DaemonTest):
    """The default level logs each step; --log-level debug adds its details (a holder's
    doorbells joining and leaving, routes changing), which restate the steps beside them."""

    def attach_and_release(self):
        owner = self.d.agent()
        r = self.share(owner)
        os.close(owner.take_fd())
        peer = self.d.agent()
        peer.call("region.attach", {"domain": "vm1", "token": r["tokens"][0]["token"]})
        os.close(peer.take_fd())
        peer.call("region.release", {"domain": "vm1", "region": r["region"]})
        peer.close()
        owner.close()
        return self.d.read_log()

    def test_default_leaves_out_details(self):
        log = self.attach_and_release()
        self.assertIn("attached on nic0", log)
        self.assertIn("released on nic0", log)
        self.assertNotIn("joined on nic0", log)
        self.assertNotIn("left on nic0", log)
        self.assertNotIn("doorbells cut", log)

    def test_every_step_is_a_line(self):
        """share, attach, revoke (a recall for each holder, or the revoke itself when nobody
        holds it), release, reclaim and a bounce answer each have a line at the default level;
        the routes they change do not."""
        log = self.attach_and_release()
        self.assertRegex(log, r"region \d+: shared on nic0 with vm1 \(rw\)")
        deadline = time.monotonic() + 10  # the take-down follows the release's reply
        while "reclaimed on nic0" not in self.d.read_log():
            self.assertLess(time.monotonic(), deadline, "no reclaim logged")
            time.sleep(0.01)
        owner, peer = self.d.agent(), self.d.agent()
        held = self.share(owner)
        os.close(owner.take_fd())
        peer.call("region.attach", {"domain": "vm1", "token": held["tokens"][0]["token"]})
        os.close(peer.take_fd())
        alone = self.share(owner)
        os.close(owner.take_fd())
        owner.call("region.revoke", {"owner": "hw0", "region": held["region"]})
        owner.call("region.revoke", {"owner": "hw0", "region": alone["region"]})
        log = self.d.read_log()
        self.assertIn(f"region {held['region']} vm1: recall on nic0: revoked by owner", log)
        self.assertNotIn(f"region {held['region']}: revoke on", log)
        self.assertIn(f"region {alone['region']}: revoke on nic0: revoked by owner", log)
        self.assertNotIn("route changed", log)
        peer.close()
        owner.close()

    def test_debug_adds_details(self):
        self.d.stop()
        self.d.extra_args += ["--log-level", "debug"]
        self.d.start()
        log = self.attach_and_release()
        self.assertIn("attached on nic0", log)
        self.assertIn("joined on nic0", log)
        self.assertIn("left on nic0: released", log)
        self.assertIn("route changed on nic0: region shared", log)

    def test_bad_level_refused(self):
        p = subprocess.run([BROKERD, "--log-level", "loud"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--log-level takes", p.stderr)


if __name__ == "__main__":
    main()
