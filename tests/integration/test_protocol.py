# SPDX-License-Identifier: Apache-2.0
"""The protocol's edges against the real daemon: malformed input, batches, identity,
and every client-controlled limit."""
import json
import os
import socket
import time

from harness import NOBODY, Client, DaemonTest, RpcError, as_user, main, rpcschema


def raw_reply(client, data):
    client.send_raw(data)
    return client.read_reply()


class Malformed(DaemonTest):
    def test_parse_error_keeps_the_connection(self):
        c = self.d.agent()
        r = raw_reply(c, b'{"jsonrpc": "2.0", "id": 1, "method": \n')
        rpcschema.validate_reply(None, r)
        self.assertEqual(r["error"]["code"], -32700)
        self.assertIsNone(r["id"])
        self.assertEqual(c.call("broker.info", {})["admin"], False)

    def test_trailing_garbage_is_a_parse_error(self):
        c = self.d.agent()
        r = raw_reply(c, b'{"jsonrpc": "2.0", "id": 1, "method": "broker.info"} x\n')
        self.assertEqual(r["error"]["code"], -32700)

    def test_invalid_requests(self):
        c = self.d.agent()
        for bad in ({"id": 1, "method": "broker.info"},
                    {"jsonrpc": "1.0", "id": 1, "method": "broker.info"},
                    {"jsonrpc": "2.0", "id": 1, "method": 7},
                    {"jsonrpc": "2.0", "id": {"x": 1}, "method": "broker.info"},
                    "just a string"):
            r = raw_reply(c, (json.dumps(bad) + "\n").encode())
            rpcschema.validate_reply(None, r)
            self.assertEqual(r["error"]["code"], -32600, bad)

    def test_unknown_method_and_wrong_types(self):
        c = self.d.agent()
        with self.assertRaises(RpcError) as e:
            c.call("region.frobnicate", {}, validate=False)
        self.assertEqual(e.exception.code, -32601)
        for params in ({"owner": "hw0", "device": "nic0", "size": "lots", "peers": [{"domain": "vm1", "access": "rw"}]},
                       {"owner": "hw0", "device": "nic0", "size": 4096, "peers": "vm1"},
                       {"owner": "hw0", "device": "nic0", "size": 4096, "peers": [{"domain": "vm1", "access": "rx"}]},
                       {"owner": "hw0", "device": "nic0", "size": 4096, "peers": [{"domain": "vm1", "access": "rw"}],
                        "colour": "blue"}):
            with self.assertRaises(RpcError) as e:
                c.call("region.share", params)
            self.assertEqual(e.exception.code, -32602, params)
        with self.assertRaises(RpcError) as e:
            c.call("broker.info", [1, 2])
        self.assertEqual(e.exception.code, -32602)
        # None of that changed anything.
        self.assertEqual(c.call("region.list", {})["regions"], [])

    def test_batches_and_notifications(self):
        c = self.d.agent()
        batch = [{"jsonrpc": "2.0", "id": "a", "method": "broker.info"},
                 {"jsonrpc": "2.0", "method": "broker.info"},
                 {"jsonrpc": "2.0", "id": "b", "method": "route.lookup", "params": {"device": "nic0", "domain": "vm1"}},
                 {"jsonrpc": "2.0", "id": "c", "method": "nope"}]
        r = raw_reply(c, (json.dumps(batch) + "\n").encode())
        self.assertIsInstance(r, list)
        self.assertEqual(sorted(x["id"] for x in r), ["a", "b", "c"])
        by_id = {x["id"]: x for x in r}
        rpcschema.validate_reply("broker.info", by_id["a"])
        rpcschema.validate_reply("route.lookup", by_id["b"])
        self.assertEqual(by_id["c"]["error"]["code"], -32601)

        r = raw_reply(c, b"[]\n")
        self.assertEqual(r["error"]["code"], -32600)

        # Notifications only: no reply at all; the next reply answers the next request.
        c.send_raw((json.dumps([{"jsonrpc": "2.0", "method": "broker.info"}]) + "\n").encode())
        c.send_raw(b'{"jsonrpc": "2.0", "method": "broker.info"}\n')
        self.assertEqual(c.call("broker.info", {})["admin"], False)

    def test_u64_integers_up_to_2_64_minus_1(self):
        # docs/protocol.md#numbers: a 64-bit input takes any JSON integer up to 2^64-1 (that one
        # used to be -32602); negative and fractional numbers stay invalid params.
        c = self.d.agent()
        for value in (1 << 63, (1 << 64) - 1):
            with self.assertRaises(RpcError) as e:
                c.call("region.get", {"region": value})
            self.assertEqual(e.exception.name, "no_such_region", value)
            with self.assertRaises(RpcError) as e:
                self.share(c, size=value)
            self.assertEqual(e.exception.name, "region_too_large", value)  # above the rule's max_region
        for value in (-1, -(1 << 63), 1.0, 1.5, True):
            with self.assertRaises(RpcError) as e:
                c.call("region.get", {"region": value})
            self.assertEqual((e.exception.code, e.exception.error["data"]["member"]), (-32602, "region"), value)
        self.assertEqual(c.call("region.list", {})["regions"], [])

    def test_members_are_checked_from_the_table(self):
        c = self.d.agent()
        for method, params, member in [
                ("broker.info", {"verbose": True}, "verbose"),
                ("region.list", {"state": "lost"}, "state"),
                ("region.attach", {"domain": "vm1"}, "token"),
                ("region.revoke", {"owner": "hw0", "region": 1, "force": "yes"}, "force"),
                ("events.subscribe", {"domains": ["vm1", 7]}, "domains[1]"),
                ("region.share", {"owner": "hw0", "device": "nic0", "size": 4096,
                                  "peers": [{"domain": "vm1", "access": "rw", "x": 1}]}, "peers[0].x")]:
            with self.assertRaises(RpcError) as e:
                c.call(method, params)
            self.assertEqual((e.exception.code, e.exception.error["data"]["member"]), (-32602, member), method)


class Identity(DaemonTest):
    def test_second_uid_acts_only_for_its_domains(self):
        c = self.d.agent()
        r = self.share(c, peers=(("vm2", "ro"),))
        os.close(c.take_fd())
        token = r["tokens"][0]["token"]
        agent_socket, admin_socket = self.d.agent_socket, self.d.admin_socket

        def as_nobody():
            out = {}
            n = Client(agent_socket)
            info = n.call("broker.info", {})
            out["uid"] = info["uid"]
            out["domains"] = info["domains"]
            for name, method, params in (
                    ("share", "region.share", {"owner": "hw0", "device": "nic0", "size": 4096,
                                              "peers": [{"domain": "vm2", "access": "ro"}]}),
                    ("attach_vm1", "region.attach", {"domain": "vm1", "token": token}),
                    ("admin", "admin.stats", {})):
                try:
                    n.call(method, params)
                    out[name] = "ok"
                except RpcError as e:
                    out[name] = e.name
            out["list"] = len(n.call("region.list", {})["regions"])
            out["attach_vm2"] = n.call("region.attach", {"domain": "vm2", "token": token})["access"]
            try:
                socket.socket(socket.AF_UNIX).connect(admin_socket)
                out["admin_socket"] = "connected"
            except PermissionError:
                out["admin_socket"] = "denied"
            n.close()
            return out

        out = as_user(NOBODY, 65534, as_nobody)
        self.assertNotIn("exception", out, out)
        self.assertEqual(out["uid"], NOBODY)
        self.assertEqual(out["domains"], ["vm2"])
        self.assertEqual(out["share"], "forbidden")
        self.assertEqual(out["attach_vm1"], "forbidden")
        self.assertEqual(out["admin"], "forbidden")
        self.assertEqual(out["list"], 1)  # the region it is a peer of
        self.assertEqual(out["attach_vm2"], "ro")
        self.assertEqual(out["admin_socket"], "denied")
        # The refused share changed nothing; but the child that attached vm2 has exited, and a
        # mapping lives as long as the process that received it: released, so the region (its only
        # peer gone) was taken down (its reclaim follows the release at the next flush).
        deadline = time.monotonic() + 10
        while c.call("region.list", {})["regions"] and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(c.call("region.list", {})["regions"]), 0)


class Limits(DaemonTest):
    extra_args = ("--max-message", "1024", "--max-depth", "8", "--max-batch", "4",
                  "--max-connections-per-uid", "6", "--max-pending", "65536")

    def assert_disconnected(self, c):
        c.sock.settimeout(5)
        with self.assertRaises((ConnectionResetError, BrokenPipeError)):
            while True:
                c.read_line()

    def test_message_size(self):
        bystander = self.d.agent()
        c = self.d.agent()
        r = raw_reply(c, b'{"jsonrpc": "2.0", "id": 1, "method": "broker.info", "params": {"x": "' + b"a" * 2000 + b'"}}\n')
        rpcschema.validate_reply(None, r)
        self.assertEqual(r["error"]["data"]["name"], "limit_exceeded")
        self.assert_disconnected(c)
        self.assertEqual(bystander.call("broker.info", {})["limits"]["max_message"], 1024)

    def test_message_size_without_newline(self):
        c = self.d.agent()
        c.send_raw(b"x" * 4096)
        r = c.read_reply()
        self.assertEqual(r["error"]["data"]["name"], "limit_exceeded")
        self.assert_disconnected(c)

    def test_depth(self):
        c = self.d.agent()
        r = raw_reply(c, b'{"jsonrpc": "2.0", "id": 1, "method": "broker.info", "params": {"a": ' + b"[" * 20 + b"]" * 20 + b"}}\n")
        self.assertEqual(r["error"]["code"], -32700)
        self.assert_disconnected(c)
        self.d.agent().call("broker.info", {})

    def test_batch_length(self):
        c = self.d.agent()
        batch = [{"jsonrpc": "2.0", "id": i, "method": "broker.info"} for i in range(5)]
        r = raw_reply(c, (json.dumps(batch) + "\n").encode())
        self.assertEqual(r["error"]["code"], -32600)
        batch = batch[:4]
        r = raw_reply(c, (json.dumps(batch) + "\n").encode())
        self.assertEqual(len(r), 4)

    def test_connections_per_uid(self):
        clients = [self.d.agent() for _ in range(6)]
        for c in clients:
            c.call("broker.info", {})
        extra = self.d.agent()
        r = extra.read_reply()
        self.assertEqual(r["error"]["data"]["name"], "limit_exceeded")
        self.assert_disconnected(extra)
        clients[0].close()
        self.d.clients.remove(clients[0])
        time.sleep(0.2)
        self.d.agent().call("broker.info", {})

    def test_slow_subscriber_is_dropped(self):
        slow = self.d.admin()
        slow.call("events.subscribe", {})
        worker = self.d.agent()
        watcher = self.d.admin()
        dropped = False
        for i in range(2000):
            r = self.share(worker, size=4096)
            os.close(worker.take_fd())
            worker.call("region.revoke", {"owner": "hw0", "region": r["region"], "deadline_ms": 0})
            if i % 50 == 49:
                stats = watcher.call("admin.stats", {})
                if stats["dropped_subscribers"] >= 1:
                    dropped = True
                    break
        self.assertTrue(dropped, "the slow subscriber was never dropped")
        self.assert_disconnected(slow)
        # The daemon carries on.
        self.share(worker)
        os.close(worker.take_fd())


if __name__ == "__main__":
    main()
