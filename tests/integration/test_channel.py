# SPDX-License-Identifier: Apache-2.0
"""The data path end to end against the real daemon: examples/channel-agent's owner and peer
share a region with doorbells, lay a libbrokerd-channel over it and talk both ways (copy and
zero-copy), blocking on the doorbells; the owner revoking mid-conversation cuts the channel
(region.left, EPIPE) and the peer ends cleanly; `brokerctl show` lists the doorbells.

The agents are separate processes, each on its own connection; the test reads what they print.
"""
import json
import os
import re
import subprocess
import threading
import time

from harness import DaemonTest, main

CHANNEL_AGENT = os.environ.get("CHANNEL_AGENT_BIN", "build/examples/channel-agent")
WAIT = 30  # seconds before a missing line fails the test instead of hanging it


class Agent:
    """A channel-agent process whose stdout lines are collected as they come."""

    def __init__(self, socket_path, *args):
        self.args = args
        self.proc = subprocess.Popen([CHANNEL_AGENT, "--socket", socket_path, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # end of output
            self.cond.notify_all()

    def wait_line(self, pattern):
        """The first line matching pattern (a regex), waiting for it."""
        deadline = time.monotonic() + WAIT
        with self.cond:
            while True:
                for line in self.lines:
                    if line is not None and re.search(pattern, line):
                        return line
                left = deadline - time.monotonic()
                if None in self.lines or left <= 0:
                    raise AssertionError(f"channel-agent {' '.join(self.args)}: no line like {pattern!r} in:\n"
                                         + "\n".join(l for l in self.lines if l is not None))
                self.cond.wait(left)

    def finish(self):
        """Waits for the exit; returns (status, stdout lines, stderr)."""
        try:
            rc = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "hung"
        self.reader.join(timeout=WAIT)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        return rc, [l for l in self.lines if l is not None], err


class ChannelTest(DaemonTest):
    def start_pair(self, owner_args=(), peer_args=()):
        owner = Agent(self.d.agent_socket, "owner", "--owner", "hw0", "--device", "nic0", "--size", "4MiB",
                      "--peer", "vm1", *owner_args)
        self.addCleanup(lambda: owner.proc.poll() is None and owner.proc.kill())
        m = re.match(r"region=(\d+) .*vectors=(\d+) token\.vm1=(\S+)$", owner.wait_line(r"^region="))
        region, vectors, token = int(m.group(1)), int(m.group(2)), m.group(3)
        peer = Agent(self.d.agent_socket, "peer", "--domain", "vm1", "--token", token, *peer_args)
        self.addCleanup(lambda: peer.proc.poll() is None and peer.proc.kill())
        return owner, peer, region, vectors

    def finished(self, agent):
        rc, lines, err = agent.finish()
        self.assertEqual(rc, 0, f"channel-agent {' '.join(agent.args)}:\n" + "\n".join(lines) + "\n" + err)
        self.assertEqual(err, "")
        return lines

    def assert_in_order(self, lines, expected):
        """Each expected line is there, after the one before it."""
        at = 0
        for e in expected:
            found = [i for i in range(at, len(lines)) if lines[i] == e]
            self.assertTrue(found, f"{e!r} missing after line {at} in:\n" + "\n".join(lines))
            at = found[0] + 1

    def test_conversation(self):
        owner, peer, region, vectors = self.start_pair(peer_args=("--rounds", "4"))
        self.assertEqual(vectors, 2)  # the owner asks for 2: data ready and space free
        owner_lines, peer_lines = self.finished(owner), self.finished(peer)

        self.assert_in_order(peer_lines, [
            f"attached region={region} size=4194304 doorbells with hw0: 2 vector(s)",
            'sent "ping 1 from vm1" (copy)', 'received "pong 1 to vm1" (copy)',
            'sent "ping 2 from vm1" (zero-copy)', 'received "pong 2 to vm1" (zero-copy)',
            'sent "ping 3 from vm1" (copy)', 'received "pong 3 to vm1" (copy)',
            'sent "ping 4 from vm1" (zero-copy)', 'received "pong 4 to vm1" (zero-copy)',
            'sent "bye" (copy)', 'received "bye" (copy)', f"released region={region}"])
        self.assertTrue(any(l.startswith("joined the channel of hw0: max_message=") for l in peer_lines), peer_lines)
        # Each side received in both modes what the other sent in both modes.
        self.assert_in_order(owner_lines, [
            f"event joined region={region} domain=vm1",
            'received "ping 1 from vm1" (zero-copy)', 'sent "pong 1 to vm1" (zero-copy)',
            'received "ping 2 from vm1" (copy)', 'sent "pong 2 to vm1" (copy)',
            'received "ping 3 from vm1" (zero-copy)', 'sent "pong 3 to vm1" (zero-copy)',
            'received "ping 4 from vm1" (copy)', 'sent "pong 4 to vm1" (copy)',
            'received "bye" (zero-copy)', 'sent "bye" (copy)', f"done: region={region} reclaimed"])
        self.assertTrue(any(l.startswith("channel created with vm1: 2 doorbell vector(s)") for l in owner_lines))
        # The peer's release is a departure: the owner was told and cut it off.
        left = [l for l in owner_lines if l.startswith(f"event left region={region} domain=vm1")]
        self.assertTrue(left, owner_lines)
        self.assert_in_order(owner_lines, [left[0], "cut off vm1: 2 doorbell(s) closed"])

    def test_revoke_mid_conversation(self):
        owner, peer, region, _ = self.start_pair(owner_args=("--revoke-after", "2"), peer_args=("--rounds", "1000"))
        owner_lines, peer_lines = self.finished(owner), self.finished(peer)

        # The owner took ping 2 and revoked instead of answering; the peer's departure reached it
        # as region.left (its doorbells with the peer closed), and its channel said EPIPE (the
        # peer's close mark or region.left, whichever came first).
        self.assert_in_order(owner_lines, [
            'sent "pong 1 to vm1" (zero-copy)', 'received "ping 2 from vm1" (copy)', f"revoking region={region}"])
        after = owner_lines[owner_lines.index(f"revoking region={region}"):]
        left = [l for l in after if l.startswith(f"event left region={region} domain=vm1")]
        self.assertTrue(left, owner_lines)
        self.assert_in_order(after, [left[0], "cut off vm1: 2 doorbell(s) closed"])
        self.assertIn("channel: vm1 is gone (EPIPE)", after)
        self.assertEqual(owner_lines[-1], f"done: region={region} reclaimed")
        self.assertFalse([l for l in owner_lines if "pong 2" in l], owner_lines)

        # The peer waited for pong 2, was recalled, gave the region back and ended cleanly.
        self.assert_in_order(peer_lines, [
            'received "pong 1 to vm1" (copy)', 'sent "ping 2 from vm1" (zero-copy)',
            f"recalled region={region}: giving it back", f"released region={region}"])
        self.assertFalse([l for l in peer_lines if "pong 2" in l], peer_lines)

    def test_peer_killed(self):
        """A peer that dies mid-conversation leaves no close mark: only the broker's region.left
        can wake the owner asleep on the channel, and it does (EPIPE after it)."""
        owner, peer, region, _ = self.start_pair(peer_args=("--rounds", "1000000"))
        owner.wait_line(r'^received "ping 3 from vm1"')
        peer.proc.kill()
        peer.finish()
        owner_lines = self.finished(owner)
        left = [l for l in owner_lines if l.startswith(f"event left region={region} domain=vm1")]
        self.assertTrue(left, owner_lines)
        self.assert_in_order(owner_lines, [
            left[0], "cut off vm1: 2 doorbell(s) closed", "channel: vm1 is gone (EPIPE)",
            f"done: region={region} reclaimed"])

    def test_forced_revoke(self):
        """The admin forces the region away mid-conversation: the peer is revoked without a
        recall, ends without touching the memory again, and the owner's channel says EPIPE."""
        owner, peer, region, _ = self.start_pair(peer_args=("--rounds", "1000000"))
        owner.wait_line(r'^received "ping 3 from vm1"')
        self.d.brokerctl("revoke", str(region), "--force")
        owner_lines, peer_lines = self.finished(owner), self.finished(peer)
        self.assertTrue([l for l in peer_lines if l.startswith(f"event revoked region={region} domain=vm1")], peer_lines)
        self.assertFalse([l for l in peer_lines if l.startswith("released")], peer_lines)
        left = [l for l in owner_lines if l.startswith(f"event left region={region} domain=vm1")]
        self.assertTrue(left, owner_lines)
        self.assert_in_order(owner_lines, [left[0], "cut off vm1: 2 doorbell(s) closed"])
        self.assertIn("channel: vm1 is gone (EPIPE)", owner_lines)
        self.assertEqual(owner_lines[-1], f"done: region={region} reclaimed")

    def test_show_doorbells(self):
        owner = self.d.spawn_agent("share", "--owner", "hw0", "--device", "nic0", "--size", "64KiB",
                                   "--peer", "vm1:rw", "--hold")
        self.addCleanup(lambda: owner.poll() is None and owner.kill())
        line = owner.stdout.readline()
        region = int(re.search(r"region=(\d+)", line).group(1))
        token = re.search(r"token\.vm1=(\S+)", line).group(1)

        # Before anyone attached: the vectors, and no pair.
        shown = json.loads(self.d.brokerctl("--json", "show", str(region)).stdout)
        self.assertEqual(shown["doorbells"], {"vectors": 2, "pairs": []})

        peer = self.d.spawn_agent("attach", "--domain", "vm1", "--token", token, "--hold", "--release-on-recall")
        self.addCleanup(lambda: peer.poll() is None and peer.kill())
        self.assertIn("attached", peer.stdout.readline())
        shown = json.loads(self.d.brokerctl("--json", "show", str(region)).stdout)
        self.assertEqual(shown["doorbells"]["vectors"], 2)
        self.assertCountEqual(shown["doorbells"]["pairs"], [{"from": "hw0", "to": "vm1"}, {"from": "vm1", "to": "hw0"}])
        text = self.d.brokerctl("show", str(region)).stdout
        self.assertRegex(text, r"(?m)^doorbells\.vectors:\s+2$")
        pairs = re.search(r"(?m)^doorbells\.pairs:\s+(\S+)$", text).group(1)
        self.assertCountEqual(pairs.split(","), ["hw0>vm1", "vm1>hw0"])

        # The peer gives the region back on its recall: no pair is left.
        self.d.brokerctl("revoke", str(region), "--deadline", "10s")
        self.assertEqual(peer.wait(timeout=WAIT), 0)
        self.assertEqual(owner.wait(timeout=WAIT), 0)


if __name__ == "__main__":
    main()
