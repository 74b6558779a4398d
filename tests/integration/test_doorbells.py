#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Doorbells against the real daemon (docs/protocol.md "Doorbells"): the parties of a region ring
each other through the eventfds brokerd hands them, joins and departures are announced, a departed
party's rings reach nobody, brokerd keeps no eventfd of a party that left or a region that went,
and bad requests change nothing. One connection per party, each subscribed to its own domain, as
separate agents would be. Whether an eventfd was rung is read with a zero-timeout poll: a write to
an eventfd makes it readable before write() returns, so nothing here waits on time."""

import json
import os
import select
import signal
import struct

from harness import Client, DaemonTest, RpcError, main

MiB = 1024 * 1024


def ring(fd):
    os.write(fd, struct.pack("=Q", 1))


def readable(fd):
    return bool(select.select([fd], [], [], 0)[0])


def drain(fd):
    """Reads the count if rung (resetting it); True if it was rung."""
    if not readable(fd):
        return False
    os.read(fd, 8)
    return True


def daemon_eventfds(pid):
    """How many eventfds brokerd holds now."""
    d = "/proc/%d/fd" % pid
    n = 0
    for name in os.listdir(d):
        try:
            n += os.readlink(os.path.join(d, name)) == "anon_inode:[eventfd]"
        except FileNotFoundError:
            pass  # closed while we looked
    return n


def daemon_eventfds_synced(daemon, pid=None):
    """daemon_eventfds() after a round trip on a connection of its own (closed again)."""
    c = Client(daemon.admin_socket)
    try:
        c.call("broker.info", {})
    finally:
        c.close()
    return daemon_eventfds(pid or daemon.proc.pid)


class Party:
    """One party of a region: its connection and its doorbells, (peer, vector) -> [send, recv],
    dups of its own that outlive the connection (and the daemon: reconnect() after a restart)."""

    def __init__(self, daemon, domain):
        self.domain = domain
        self.daemon = daemon
        self.bells = {}
        self.reconnect()

    def reconnect(self):
        self.c = self.daemon.agent()
        self.c.call("events.subscribe", {"domains": [self.domain]})

    def take_bells(self, result):
        for b in result["doorbells"]:
            for fd in self.bells.pop((b["peer"], b["vector"]), ()):
                os.close(fd)
            self.bells[(b["peer"], b["vector"])] = [os.dup(self.c.reply_fds[b["send"]]),
                                                    os.dup(self.c.reply_fds[b["recv"]])]

    def fetch(self, region):
        r = self.c.call("region.doorbells", {"domain": self.domain, "region": region})
        self.take_bells(r)
        return r

    def drop(self, peer):
        """What a party does on region.left: closes its ends with peer."""
        for key in [k for k in self.bells if k[0] == peer]:
            for fd in self.bells.pop(key):
                os.close(fd)

    def close(self):
        for peer in {k[0] for k in self.bells}:
            self.drop(peer)

    def recv_fds(self):
        return [v[1] for v in self.bells.values()]

    def all_fds(self):
        return [fd for v in self.bells.values() for fd in v]


def assert_connected(test, x, y, vectors=2):
    """x rings y and y rings x on every vector, each wakes exactly the one end it should."""
    for v in range(vectors):
        for a, b in ((x, y), (y, x)):
            ring(a.bells[(b.domain, v)][0])
            for (peer, w), (_, recv) in b.bells.items():
                test.assertEqual(drain(recv), peer == a.domain and w == v, (a.domain, b.domain, v, peer, w))


class Doorbells(DaemonTest):
    def setUp(self):
        super().setUp()
        self.baseline = daemon_eventfds(self.d.proc.pid)
        self.parties = []

    def tearDown(self):
        for p in self.parties:
            p.close()
        super().tearDown()

    def party(self, domain):
        p = Party(self.d, domain)
        self.parties.append(p)
        return p

    def eventfds(self):
        """brokerd's eventfds beyond those it had at start. A round trip first: brokerd closes the
        dups it sent right after sendmsg(), which may be after the client already read them."""
        return daemon_eventfds_synced(self.d) - self.baseline

    def shared(self, owner, **extra):
        """gpu0, 2 MiB for vm1 and vm2 (ro, multi-peer): three parties at most."""
        r = owner.c.call("region.share", {"owner": "hw0", "device": "gpu0", "size": 2 * MiB, "numa_node": 1,
                                          "peers": [{"domain": "vm1", "access": "ro"},
                                                    {"domain": "vm2", "access": "ro"}], **extra})
        os.close(owner.c.take_fd())
        return r

    def attach(self, party, share):
        token = next(t["token"] for t in share["tokens"] if t["domain"] == party.domain)
        a = party.c.call("region.attach", {"domain": party.domain, "token": token})
        os.close(party.c.take_fd())
        party.take_bells(a)
        return a

    def assert_connected(self, x, y, vectors=2):
        assert_connected(self, x, y, vectors)

    def assert_silent(self, parties):
        for p in parties:
            for fd in p.recv_fds():
                self.assertFalse(readable(fd), p.domain)

    def test_owner_and_peer_ring_each_other(self):
        owner, vm1 = self.party("hw0"), self.party("vm1")
        r = owner.c.call("region.share", {"owner": "hw0", "device": "nic0", "size": 4096,
                                          "peers": [{"domain": "vm1", "access": "rw"}]})
        os.close(owner.c.take_fd())
        self.assertEqual(r["vectors"], 2)
        self.assertEqual(self.eventfds(), 0)  # no pair before a peer attaches
        a = self.attach(vm1, r)
        self.assertEqual((a["vectors"], a["generation"]), (2, 1))
        self.assertEqual(sorted(vm1.bells), [("hw0", 0), ("hw0", 1)])
        self.assertEqual(len(vm1.c.reply_fds), 1 + 4)
        joined = owner.c.wait_notification("region.joined")["params"]
        self.assertEqual((joined["region"], joined["domain"]), (r["region"], "vm1"))
        got = owner.fetch(r["region"])
        self.assertEqual((got["domain"], got["vectors"], got["generation"]), ("hw0", 2, 1))
        self.assertEqual(sorted(owner.bells), [("vm1", 0), ("vm1", 1)])
        self.assert_connected(owner, vm1)
        # Idempotent: the same eventfds again (rung through the new ends, heard on the old ones).
        old_send = os.dup(owner.bells[("vm1", 0)][0])
        owner.fetch(r["region"])
        ring(old_send)
        os.close(old_send)
        self.assertTrue(drain(vm1.bells[("hw0", 0)][1]))
        ring(owner.bells[("vm1", 1)][0])
        self.assertTrue(drain(vm1.bells[("hw0", 1)][1]))
        self.assertFalse(readable(vm1.bells[("hw0", 0)][1]))
        self.assertEqual(self.eventfds(), 4)  # 2 ordered pairs x 2 vectors
        region = owner.c.call("region.get", {"region": r["region"]})
        self.assertEqual(region["doorbells"], {"vectors": 2, "pairs": [{"from": "hw0", "to": "vm1"},
                                                                       {"from": "vm1", "to": "hw0"}]})

    def three_parties(self, **extra):
        owner, vm1, vm2 = self.party("hw0"), self.party("vm1"), self.party("vm2")
        r = self.shared(owner, **extra)
        self.attach(vm1, r)
        self.assertEqual(owner.c.wait_notification("region.joined")["params"]["domain"], "vm1")
        owner.fetch(r["region"])
        a = self.attach(vm2, r)
        # The new peer's reply: its ends with the owner first, then vm1.
        self.assertEqual([(b["peer"], b["vector"]) for b in a["doorbells"]],
                         [("hw0", 0), ("hw0", 1), ("vm1", 0), ("vm1", 1)])
        for p in (owner, vm1):
            self.assertEqual(p.c.wait_notification("region.joined")["params"]["domain"], "vm2")
            p.fetch(r["region"])
        self.assertNotIn("region.joined", [n["method"] for n in vm2.c.notifications])  # nobody tells it
        self.assertEqual(self.eventfds(), 12)  # 6 ordered pairs x 2 vectors
        return r, owner, vm1, vm2

    def test_second_peer_joins_and_all_pairs_connect(self):
        _, owner, vm1, vm2 = self.three_parties()
        self.assertEqual(sorted(vm1.bells), [("hw0", 0), ("hw0", 1), ("vm2", 0), ("vm2", 1)])
        for x, y in ((owner, vm1), (owner, vm2), (vm1, vm2)):
            self.assert_connected(x, y)
        self.assert_silent((owner, vm1, vm2))

    def test_release_cuts_the_leaver_off(self):
        r, owner, vm1, vm2 = self.three_parties()
        self.assertEqual(vm2.c.call("region.release", {"domain": "vm2", "region": r["region"]})["state"], "active")
        for p in (owner, vm1):
            left = p.c.wait_notification("region.left")["params"]
            self.assertEqual((left["domain"], left["reason"]), ("vm2", "released"))
            p.drop("vm2")
        self.assertEqual(self.eventfds(), 4)  # the broker's copies of vm2's pairs are closed
        with self.assertRaises(RpcError) as e:
            vm2.fetch(r["region"])
        self.assertEqual(e.exception.name, "no_such_region")
        for fd in vm2.all_fds():  # every end it still holds, send and recv
            ring(fd)
        self.assert_silent((owner, vm1))
        self.assert_connected(owner, vm1)
        # vm1 goes too: nobody but the owner was left, so the region is reclaimed and brokerd
        # holds no eventfd of it.
        vm1.c.call("region.release", {"domain": "vm1", "region": r["region"]})
        # region.left comes before region.released (docs/protocol.md): it is in already when
        # region.released arrives, so an agent reading both cuts vm1 off first.
        while owner.c.wait_notification("region.released")["params"]["domain"] != "vm1":
            pass  # vm2's, from before
        self.assertIn(("region.left", "vm1"), [(n["method"], n["params"]["domain"]) for n in owner.c.notifications])
        self.assertEqual(self.eventfds(), 0)
        with self.assertRaises(RpcError) as e:
            owner.fetch(r["region"])
        self.assertEqual(e.exception.name, "no_such_region")

    def test_revoked_peer_is_cut_and_a_later_peer_gets_new_pairs(self):
        owner, vm1, vm2 = self.party("hw0"), self.party("vm1"), self.party("vm2")
        r = self.shared(owner)
        self.attach(vm1, r)
        owner.c.wait_notification("region.joined")
        owner.fetch(r["region"])
        # vm1's domain goes away: its attachment is revoked.
        adm = self.d.admin()
        adm.call("admin.domain_gone", {"domain": "vm1"})
        left = owner.c.wait_notification("region.left")["params"]
        self.assertEqual((left["domain"], left["reason"]), ("vm1", "domain vm1 went away"))
        owner.drop("vm1")
        self.assertEqual(self.eventfds(), 0)
        with self.assertRaises(RpcError) as e:
            vm1.fetch(r["region"])
        self.assertEqual(e.exception.name, "no_such_region")
        # vm2 joins later: its pairs with the owner are new, the revoked peer never held them.
        self.attach(vm2, r)
        owner.c.wait_notification("region.joined")
        owner.fetch(r["region"])
        self.assertEqual(sorted(owner.bells), [("vm2", 0), ("vm2", 1)])
        for fd in vm1.all_fds():
            ring(fd)
        self.assert_silent((owner, vm2))
        self.assert_connected(owner, vm2)
        # The owner revokes with force: vm2 is cut, and every eventfd of the region is closed.
        owner.c.call("region.revoke", {"owner": "hw0", "region": r["region"], "force": True})
        left = owner.c.wait_notification("region.left")["params"]
        self.assertEqual((left["domain"], left["reason"]), ("vm2", "revoked by owner hw0"))
        self.assertEqual(self.eventfds(), 0)

    def test_peer_process_exit_cuts_it(self):
        """The peer's connection is its process here: a child attaches and exits."""
        owner = self.party("hw0")
        r = self.shared(owner)
        token = r["tokens"][0]["token"]
        pid = os.fork()
        if pid == 0:  # the peer: attach, then exit holding everything
            try:
                p = Party(self.d, "vm1")
                p.c.call("region.attach", {"domain": "vm1", "token": token})
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        self.assertEqual(owner.c.wait_notification("region.joined")["params"]["domain"], "vm1")
        left = owner.c.wait_notification("region.left")["params"]
        self.assertEqual((left["domain"], left["reason"]), ("vm1", "holder process exited"))
        self.assertEqual(self.eventfds(), 0)

    def test_owner_process_exit_cuts_it(self):
        """The owner's connection is a child's: it shares, hands the token over, and exits when told;
        its peers hear it left (and are recalled: the region is revoked)."""
        vm1 = self.party("vm1")
        rfd, wfd = os.pipe()
        gfd, hfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the owner
            try:
                os.close(rfd)
                os.close(hfd)
                r = self.shared(Party(self.d, "hw0"))
                os.write(wfd, json.dumps([r["region"], r["tokens"][0]["token"]]).encode())
                os.read(gfd, 1)  # until told to go
            finally:
                os._exit(0)
        os.close(wfd)
        os.close(gfd)
        region, token = json.loads(os.read(rfd, 4096))
        os.close(rfd)
        self.attach(vm1, {"tokens": [{"domain": "vm1", "token": token}]})
        self.assertEqual(self.eventfds(), 4)
        os.close(hfd)
        os.waitpid(pid, 0)
        left = vm1.c.wait_notification("region.left")["params"]
        self.assertEqual((left["region"], left["domain"], left["reason"]), (region, "hw0", "owner process exited"))
        self.assertEqual(vm1.c.wait_notification("region.recall")["params"]["region"], region)
        self.assertEqual(self.eventfds(), 0)
        with self.assertRaises(RpcError) as e:
            vm1.c.call("region.doorbells", {"domain": "hw0", "region": region})
        self.assertEqual(e.exception.name, "no_such_region")

    def test_vectors_chosen_at_share(self):
        owner, vm1, vm2 = self.party("hw0"), self.party("vm1"), self.party("vm2")
        r = self.shared(owner, doorbells=4)
        self.assertEqual(r["vectors"], 4)
        a = self.attach(vm1, r)
        self.assertEqual(len(a["doorbells"]), 4)
        self.assertEqual(len(vm1.c.reply_fds), 1 + 8)
        owner.fetch(r["region"])
        self.assert_connected(owner, vm1, vectors=4)
        # No doorbells: nothing made, empty lists, no notification of joins.
        r0 = self.shared(owner, doorbells=0)
        self.assertEqual(r0["vectors"], 0)
        before = self.eventfds()
        a = self.attach(vm2, r0)
        self.assertEqual((a["vectors"], a["doorbells"], len(vm2.c.reply_fds)), (0, [], 1))
        self.assertEqual(owner.fetch(r0["region"])["doorbells"], [])
        self.assertEqual(self.eventfds(), before)
        self.assertEqual(owner.c.call("region.get", {"region": r0["region"]})["doorbells"],
                         {"vectors": 0, "pairs": []})

    def test_restart_without_a_store_makes_new_pairs(self):
        """No fd store: a start makes the pairs anew, with a new generation; the old ends no longer
        connect, the new ones do. nic0's pool is file-backed, so the region survives the restart."""
        owner, vm1 = self.party("hw0"), self.party("vm1")
        r = owner.c.call("region.share", {"owner": "hw0", "device": "nic0", "size": 4096,
                                          "peers": [{"domain": "vm1", "access": "rw"}]})
        os.close(owner.c.take_fd())
        self.attach(vm1, r)
        owner.c.wait_notification("region.joined")
        owner.fetch(r["region"])
        old_owner, old_vm1 = dict(owner.bells), dict(vm1.bells)
        owner.bells, vm1.bells = {}, {}
        self.assertEqual(self.d.restart(), 0)
        self.baseline = daemon_eventfds(self.d.proc.pid) - 4  # the region's pairs, made at start
        for p in (owner, vm1):
            p.reconnect()
            self.assertEqual(p.fetch(r["region"])["generation"], 2)
        self.assertEqual(self.eventfds(), 4)
        self.assert_connected(owner, vm1)
        for ends in list(old_owner.values()) + list(old_vm1.values()):
            ring(ends[0])
        self.assert_silent((owner, vm1))
        for ends in list(old_owner.values()) + list(old_vm1.values()):
            for fd in ends:
                os.close(fd)
        audit = self.d.admin().call("admin.audit", {"newest": 1})["entries"]
        self.assertEqual((audit[0]["action"], audit[0]["region"]), ("doorbells", r["region"]))

    def test_reply_line_holds_at_most_253_fds(self):
        """A batch whose replies would carry more than SCM_MAX_FD fds: the element that would
        overflow fails with limit_exceeded, before it does anything (an attach is not made)."""
        owner, vm1 = self.party("hw0"), self.party("vm1")
        r = self.shared(owner, doorbells=4)
        self.attach(vm1, r)
        fetch = {"jsonrpc": "2.0", "method": "region.doorbells", "params": {"domain": "hw0", "region": r["region"]}}
        token = next(t["token"] for t in r["tokens"] if t["domain"] == "vm2")
        attach = {"jsonrpc": "2.0", "method": "region.attach", "params": {"domain": "vm2", "token": token}}
        # 31 x 8 fds = 248; then an attach (1 + 2 x 4 x 2 = 17) or another fetch (8) does not fit.
        for last in (attach, fetch):
            batch = [dict(fetch, id=i) for i in range(31)] + [dict(last, id=31)]
            n_fds = len(owner.c.fds)
            owner.c.send_raw((json.dumps(batch) + "\n").encode())
            reply = sorted(owner.c.read_reply(), key=lambda x: x["id"])
            self.assertTrue(all("result" in x for x in reply[:31]))
            self.assertEqual(reply[31]["error"]["data"]["name"], "limit_exceeded")
            self.assertEqual(len(owner.c.fds) - n_fds, 31 * 8)
            for fd in owner.c.fds[n_fds:]:
                os.close(fd)
            del owner.c.fds[n_fds:]
        self.assertEqual(self.eventfds(), 2 * 4)
        # The attach was not made: vm2 can still attach, with its 1 + 16 fds.
        a = self.attach(self.party("vm2"), r)
        self.assertEqual(len(a["doorbells"]), 8)

    def test_ends_handed_out_outlive_a_later_request_of_the_batch(self):
        """brokerd hands its own eventfds and memfd to a reply that leaves at once, and dups them
        for one still queued when a later request could close them. A batch [attach A, release A,
        attach B] closes A's pairs in brokerd and makes B's (the numbers are free again) before
        the line leaves: A's ends in the reply must still be A's, never B's."""
        owner, vm1 = self.party("hw0"), self.party("vm1")
        share = {"owner": "hw0", "device": "nic0", "size": 4096, "peers": [{"domain": "vm1", "access": "rw"}]}
        ra = owner.c.call("region.share", share)
        os.close(owner.c.take_fd())
        rb = owner.c.call("region.share", share)
        os.close(owner.c.take_fd())
        token = {r["region"]: r["tokens"][0]["token"] for r in (ra, rb)}
        batch = [{"jsonrpc": "2.0", "id": 1, "method": "region.attach",
                  "params": {"domain": "vm1", "token": token[ra["region"]]}},
                 {"jsonrpc": "2.0", "id": 2, "method": "region.release",
                  "params": {"domain": "vm1", "region": ra["region"]}},
                 {"jsonrpc": "2.0", "id": 3, "method": "region.attach",
                  "params": {"domain": "vm1", "token": token[rb["region"]]}}]
        n_fds = len(vm1.c.fds)
        vm1.c.send_raw((json.dumps(batch) + "\n").encode())
        reply = {x["id"]: x for x in vm1.c.read_reply()}
        self.assertTrue(all("result" in reply[i] for i in (1, 2, 3)), reply)
        fds = vm1.c.fds[n_fds:]
        del vm1.c.fds[n_fds:]
        try:
            a, b = reply[1]["result"], reply[3]["result"]
            for r, res in ((ra, a), (rb, b)):  # a memfd or a pool file, named by pool and region
                self.assertRegex(os.readlink(f"/proc/self/fd/{fds[res['fd']]}"),
                                 rf"brokerd[-:]{r['pool']}[-:]{r['region']}( \(deleted\))?$")
            owner.fetch(rb["region"])
            # B's ends connect vm1 and the owner, vector by vector.
            for d in b["doorbells"]:
                ring(fds[d["send"]])
                self.assertTrue(drain(owner.bells[("vm1", d["vector"])][1]))
                ring(owner.bells[("vm1", d["vector"])][0])
                self.assertTrue(drain(fds[d["recv"]]))
            # A's were cut: ringing them wakes nobody of B, and nothing rings them.
            for d in a["doorbells"]:
                self.assertEqual(os.readlink(f"/proc/self/fd/{fds[d['send']]}"), "anon_inode:[eventfd]")
                ring(fds[d["send"]])
            self.assert_silent([owner])
            for d in a["doorbells"]:
                self.assertFalse(readable(fds[d["recv"]]))
        finally:
            for fd in fds:
                os.close(fd)

    def test_ends_held_for_the_flush_outlive_a_release_on_another_connection(self):
        """Under group sync an attach's reply waits in brokerd for the turn's flush, holding
        brokerd's own eventfds (lent, no dup). In the same turn another connection's release
        cuts those pairs (brokerd closes them) and a third connection's attach makes new
        eventfds on the freed numbers: the held reply must still carry the first pairs' files
        (dup'ed when they were closed, util/lent-fd.h), never the new ones."""
        owner, vm1, vm2, other = self.party("hw0"), self.party("vm1"), self.party("vm2"), self.party("vm2")
        r, s = self.shared(owner), self.shared(owner)
        self.attach(vm2, r)
        tokens = {(x["region"], t["domain"]): t["token"] for x in (r, s) for t in x["tokens"]}

        def line(method, params):
            return (json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) + "\n").encode()

        pid = self.d.proc.pid
        os.kill(pid, signal.SIGSTOP)  # stopped, brokerd finds all three waiting: one turn
        try:
            vm1.c.send_raw(line("region.attach", {"domain": "vm1", "token": tokens[(r["region"], "vm1")]}))
            vm2.c.send_raw(line("region.release", {"domain": "vm2", "region": r["region"]}))
            other.c.send_raw(line("region.attach", {"domain": "vm2", "token": tokens[(s["region"], "vm2")]}))
        finally:
            os.kill(pid, signal.SIGCONT)
        replies = {}
        for p in (vm1, vm2, other):
            first = len(p.c.fds)
            replies[p] = p.c.read_reply()
            self.assertIn("result", replies[p], replies[p])
            p.c.set_apart_bells(replies[p], first)
        os.close(vm1.c.take_fd())
        os.close(other.c.take_fd())
        vm1.take_bells(replies[vm1]["result"])
        other.take_bells(replies[other]["result"])

        def ids(fds):
            out = set()
            for fd in fds:
                with open(f"/proc/self/fdinfo/{fd}") as f:
                    out |= {ln.split()[1] for ln in f if ln.startswith("eventfd-id:")}
            return out

        held = [fd for (peer, _), ends in vm1.bells.items() if peer == "vm2" for fd in ends]
        self.assertEqual(len(held), 4)  # two vectors, both directions
        self.assertEqual(len(ids(held)), 4)
        self.assertFalse(ids(held) & ids(other.all_fds()), "the held reply carried the new pairs' eventfds")
        # The cut pairs reach nobody; vm1 and the owner still ring each other.
        for (peer, _), (send, _) in list(vm1.bells.items()):
            if peer == "vm2":
                ring(send)
        owner.fetch(s["region"])
        self.assert_silent([other, owner])
        owner.fetch(r["region"])
        self.assert_connected(vm1, owner)

    def test_bad_input_changes_nothing(self):
        owner, vm1 = self.party("hw0"), self.party("vm1")
        r = self.shared(owner)
        self.attach(vm1, r)
        owner.fetch(r["region"])
        adm = self.d.admin()

        def state():
            audit = adm.call("admin.audit", {"newest": 1})
            return (json.dumps(owner.c.call("region.list", {})), self.eventfds(), json.dumps(audit))

        before = state()

        def refused(c, method, params, name):
            with self.assertRaises(RpcError) as e:
                c.call(method, params)
            self.assertEqual(e.exception.name, name, e.exception)
            self.assertEqual(c.reply_fds, [])

        share = {"owner": "hw0", "device": "gpu0", "size": 2 * MiB, "numa_node": 1,
                 "peers": [{"domain": "vm1", "access": "ro"}]}
        refused(owner.c, "region.share", {**share, "doorbells": 5}, "invalid_request")
        refused(owner.c, "region.share", {**share, "doorbells": "0x10"}, "invalid_request")
        with self.assertRaises(RpcError) as e:
            owner.c.call("region.share", {**share, "doorbells": -1})
        self.assertEqual(e.exception.code, -32602)
        # region.doorbells of a region the domain does not hold (vm2 only has a grant), of one
        # that does not exist, for a domain that is nobody's.
        vm2 = self.party("vm2")
        refused(vm2.c, "region.doorbells", {"domain": "vm2", "region": r["region"]}, "no_such_region")
        refused(vm1.c, "region.doorbells", {"domain": "vm1", "region": r["region"] + 100}, "no_such_region")
        refused(vm1.c, "region.doorbells", {"domain": "nobody9", "region": r["region"]}, "forbidden")
        with self.assertRaises(RpcError) as e:
            vm1.c.call("region.doorbells", {"domain": "vm1"})
        self.assertEqual(e.exception.code, -32602)
        # Bytes that are not UTF-8: refused whole, before any method runs.
        n_fds = len(vm1.c.fds)
        vm1.c.send_raw(b'{"jsonrpc": "2.0", "id": 99, "method": "region.doorbells",'
                       b' "params": {"domain": "vm\xff1", "region": 1}}\n')
        reply = vm1.c.read_reply()
        self.assertIn("error", reply)
        self.assertEqual(len(vm1.c.fds), n_fds)
        self.assertEqual(state(), before)
        # Not bad input, but no region either: a bounce holds nothing, no vectors and no fds.
        b = owner.c.call("region.share", {**share, "size": "1GiB", "doorbells": 4})
        self.assertEqual(sorted(b), ["placement", "reason"])
        self.assertEqual(owner.c.reply_fds, [])
        self.assertEqual(self.eventfds(), before[1])


if __name__ == "__main__":
    main()
