# SPDX-License-Identifier: Apache-2.0
"""Group commit (docs/store.md "Group sync"): the commits of requests that arrive together share
one flush of the WAL, nobody hears of a commit before that flush, and a request that commits
nothing flushes nothing. Watched from outside with strace (the order of brokerd's own system
calls), not timed."""
import json
import os
import shutil
import signal
import subprocess
import time
import unittest

import harness
from harness import DaemonTest, main

STRACE = shutil.which("strace")
SHARE = {"owner": "hw0", "device": "nic0", "size": 4096, "peers": [{"domain": "vm1", "access": "rw"}]}


@unittest.skipUnless(STRACE, "strace is not installed (scripts/install-deps installs it)")
class GroupSync(DaemonTest):
    # Room for a long pipeline of shares: the test policy's with a larger quota.
    policy = {**harness.POLICY, "quotas": [{"domain": "hw0", "max_bytes": "56MiB", "max_regions": 400}]}
    def trace(self, name="strace.out", calls="fdatasync,sendmsg", strsize=256):
        """strace on the running daemon: those of its system calls, in order."""
        out = os.path.join(self.d.dir, name)
        pid = self.d.proc.pid
        tracer = subprocess.Popen([STRACE, "-f", "-qq", "-s", str(strsize), "-e", "trace=" + calls,
                                   "-o", out, "-p", str(pid)], stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: tracer.poll() is None and tracer.kill())
        self.wait_traced(pid)
        return tracer, out

    def send_while_stopped(self, sends):
        """Stopped, the daemon finds everything sent waiting when it resumes: one loop turn."""
        pid = self.d.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            for c, data in sends:
                c.send_raw(data)
        finally:
            os.kill(pid, signal.SIGCONT)

    def wait_traced(self, pid):
        deadline = time.monotonic() + 10
        while True:
            with open(f"/proc/{pid}/status") as f:
                if any(line.startswith("TracerPid:") and line.split()[1] != "0" for line in f):
                    return
            self.assertLess(time.monotonic(), deadline, "strace did not attach")
            time.sleep(0.02)

    @staticmethod
    def events(out):
        """'sync' per fdatasync, the reply's id per reply sent, 'notify' per notification."""
        seen = []
        with open(out) as f:
            for line in f:
                if "fdatasync(" in line and "= 0" in line:
                    seen.append("sync")
                elif "sendmsg(" in line:
                    # strace shows the line's quotes escaped: \"result\"
                    reply = '\\"result\\"' in line or '\\"error\\"' in line
                    seen.append("reply" if reply else "notify")
        return seen

    def test_arrivals_share_one_flush(self):
        clients = [self.d.agent() for _ in range(8)]
        for c in clients:
            c.call("broker.info", {})  # connected and served: the next request is read at once
        tracer, out = self.trace()

        self.send_while_stopped(
            (c, (json.dumps({"jsonrpc": "2.0", "id": 100 + i, "method": "region.share", "params": SHARE})
                 + "\n").encode())
            for i, c in enumerate(clients))
        for i, c in enumerate(clients):
            reply = c.read_reply()
            self.assertEqual(reply["id"], 100 + i)
            self.assertEqual(reply["result"]["placement"], "region")
            os.close(c.take_fd())

        # Nothing committed: nothing to flush, answered at once.
        for c in clients[:3]:
            c.call("broker.info", {})
        # A write after a quiet spell: its own flush, before its reply. It takes the region down
        # (no peer attached): the reclaim follows the reply, with a flush of its own, before the
        # connection's next request is read.
        self.assertEqual(clients[0].call("region.revoke", {"owner": "hw0", "region": 1, "deadline_ms": 0})["state"],
                         "revoking")
        clients[0].call("broker.info", {})
        tracer.terminate()
        tracer.wait(timeout=10)

        self.assertEqual(self.events(out),
                         ["sync"] + ["reply"] * 8 + ["reply"] * 3 + ["sync", "reply", "sync", "reply"])

    def test_take_downs_arriving_together_share_two_flushes(self):
        """Eight last peers release at once. The releases share one flush, and only after it does
        the owner's subscriber hear of them; only after that is any of the memory scrubbed (the
        backend's fallocate), and the eight reclaims share a second flush, which region.reclaimed
        follows. (A take-down that flushed by itself before its scrub made it nine flushes.)"""
        sub = self.d.agent()
        sub.call("events.subscribe", {"domains": ["hw0"]})
        clients = [self.d.agent() for _ in range(8)]
        for c in clients:
            shared = c.call("region.share", SHARE)
            os.close(c.take_fd())
            c.region = shared["region"]
            c.call("region.attach", {"domain": "vm1", "token": shared["tokens"][0]["token"]})
            os.close(c.take_fd())
        sub.call("broker.info", {})
        sub.notifications.clear()
        tracer, out = self.trace("strace-takedown.out", "fdatasync,sendmsg,fallocate", 512)

        self.send_while_stopped(
            (c, (json.dumps({"jsonrpc": "2.0", "id": 200 + i, "method": "region.release",
                             "params": {"domain": "vm1", "region": c.region}}) + "\n").encode())
            for i, c in enumerate(clients))
        for i, c in enumerate(clients):
            reply = c.read_reply()
            self.assertEqual(reply["id"], 200 + i)
            self.assertEqual(reply["result"]["state"], "revoking")
        for _ in clients:
            sub.wait_notification("region.reclaimed")
        sub.call("broker.info", {})  # read after the turn that took the regions down
        tracer.terminate()
        tracer.wait(timeout=10)

        seen = []
        with open(out) as f:
            for line in f:
                if "fdatasync(" in line and "= 0" in line:
                    seen.append("sync")
                elif "fallocate(" in line:
                    seen.append("scrub")
                elif "sendmsg(" in line:
                    for kind in ("region.released", "region.reclaimed", '\\"result\\"'):
                        if kind in line:
                            seen.append(kind.strip('\\"'))
        self.assertEqual(seen.count("sync"), 2, seen)
        self.assertEqual(seen.count("scrub"), 8, seen)
        first_sync, second_sync = [i for i, x in enumerate(seen) if x == "sync"]
        scrubs = [i for i, x in enumerate(seen) if x == "scrub"]
        released = [i for i, x in enumerate(seen) if x == "region.released"]
        reclaimed = [i for i, x in enumerate(seen) if x == "region.reclaimed"]
        replies = [i for i, x in enumerate(seen) if x == "result"]
        self.assertTrue(released and reclaimed, seen)
        # Told of the releases only once durable; memory scrubbed only once they were told.
        self.assertLess(first_sync, min(released))
        self.assertLess(max(released), min(scrubs))
        self.assertLess(max(scrubs), second_sync)
        self.assertLess(second_sync, min(reclaimed))
        # The eight releases were answered by the first flush, the last reply (broker.info) after both.
        self.assertEqual(len(replies), 9, seen)
        self.assertTrue(all(first_sync < i < second_sync for i in replies[:8]), seen)
        self.assertGreater(replies[8], second_sync)

    def test_a_long_pipeline_is_answered_as_it_goes(self):
        """300 shares pipelined on one connection (no take-down among them, whose scrub would
        flush by itself): the gate flushes at 256 unflushed commits, so replies go out while the
        rest of the pipeline is still being handled, rather than all held until the loop runs
        dry (docs/store.md "Group sync", the bounds)."""
        c = self.d.agent()
        c.call("broker.info", {})
        lines = [{"jsonrpc": "2.0", "id": i, "method": "region.share", "params": SHARE} for i in range(300)]
        tracer, out = self.trace("strace-long.out", "fdatasync,sendmsg,pwrite64", 64)
        self.send_while_stopped([(c, "".join(json.dumps(x) + "\n" for x in lines).encode())])
        for i in range(300):
            reply = c.read_reply()
            self.assertEqual(reply["id"], i)
            self.assertEqual(reply["result"]["placement"], "region")
            os.close(c.take_fd())
        tracer.terminate()
        tracer.wait(timeout=10)

        seen = []
        with open(out) as f:
            for line in f:
                if "pwrite64(" in line:
                    seen.append("write")
                elif "fdatasync(" in line:
                    seen.append("sync")
                elif "sendmsg(" in line:
                    seen.append("reply")
        first_sync, first_reply = seen.index("sync"), seen.index("reply")
        self.assertLess(first_sync, first_reply)
        # Replies went out, then more commits were written: the pipeline was answered as it went.
        self.assertIn("write", seen[first_reply:])
        self.assertGreaterEqual(seen.count("sync"), 2)

if __name__ == "__main__":
    main()
