# SPDX-License-Identifier: Apache-2.0
"""brokerd's fd limit (docs/bench-scale.md, "File descriptors"): the memfd backend holds one fd
per live region and one per holder, so brokerd raises its soft RLIMIT_NOFILE to the hard limit
at start, and a share that finds the limit reached fails cleanly and leaves nothing behind."""
import os
import resource

import harness

POLICY = dict(harness.POLICY, quotas=[{"domain": "hw0", "max_regions": 1000}])


class LimitedDaemon(harness.Daemon):
    """brokerd started with RLIMIT_NOFILE (soft, hard) = limits."""

    def __init__(self, limits):
        super().__init__(policy=POLICY)
        self.limits = limits

    def launch(self, env):
        return harness.subprocess.Popen(
            [harness.BROKERD, "--platform", self.platform_path, "--policy", self.policy_path, "--db", self.db,
             "--agent-socket", self.agent_socket, "--admin-socket", self.admin_socket,
             "--agent-group", "nogroup", "--log-target", "stderr"],
            stdout=self.logf, stderr=self.logf, env={**os.environ, **(env or {})},
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, self.limits))


def nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        line = next(line for line in f if line.startswith("Max open files"))
    return tuple(int(v) for v in line.split()[3:5])


class FdLimit(harness.unittest.TestCase):
    def start(self, limits):
        self.d = LimitedDaemon(limits).start()
        self.addCleanup(self.stop_cleanly)
        return self.d

    def stop_cleanly(self):
        """As harness.DaemonTest: a clean stop, and no sanitizer reports."""
        rc = self.d.stop()
        log = self.d.read_log()
        self.d.cleanup()
        self.assertEqual(rc, 0, log)
        self.assertNotIn("ERROR: AddressSanitizer", log)
        self.assertNotIn("runtime error:", log)

    def share(self, c):
        return c.call("region.share", {"owner": "hw0", "device": "gpu0", "size": 4096,
                                       "peers": [{"domain": "vm1", "access": "ro"}]})

    def test_soft_limit_raised_to_hard(self):
        d = self.start((256, 1024))
        self.assertEqual(nofile(d.proc.pid), (1024, 1024))
        self.assertIn("fd limit (RLIMIT_NOFILE): raised from 256 to the hard limit, 1024", d.read_log())

    def test_limit_already_at_hard_is_said(self):
        d = self.start((512, 512))
        self.assertEqual(nofile(d.proc.pid), (512, 512))
        self.assertIn("fd limit (RLIMIT_NOFILE): 512, the hard limit", d.read_log())

    def test_share_at_the_limit_fails_and_changes_nothing(self):
        """Regions until the limit: the share that finds no fd left is refused with a clear error,
        no region is left of it, and freeing one region lets the next share through."""
        d = self.start((40, 40))
        c = d.agent()
        shared = []
        error = None
        for _ in range(32):  # gpu1 has 32 slots; 40 fds run out well before
            try:
                shared.append(self.share(c)["region"])
                c.take_fd()
            except harness.RpcError as e:
                error = e
                break
        self.assertIsNotNone(error, "40 fds held %d regions" % len(shared))
        self.assertGreater(len(shared), 0)
        # The backend's own error, with strerror(EMFILE) in its message (docs/protocol.md).
        self.assertEqual(error.name, "backend_failed", str(error))
        self.assertIn("Too many open files", error.error["message"])
        listed = [r["region"] for r in c.call("region.list", {"limit": 4096})["regions"]]
        self.assertEqual(listed, shared)
        self.assertEqual(c.call("broker.info")["backend"], "memfd")
        c.call("region.revoke", {"owner": "hw0", "region": shared[-1], "force": True})
        self.assertEqual(self.share(c)["placement"], "region")


if __name__ == "__main__":
    harness.main()
