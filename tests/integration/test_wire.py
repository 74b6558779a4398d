# SPDX-License-Identifier: Apache-2.0
"""The wire as a hostile client tries it (docs/protocol.md#the-wire-text-numbers-ids, #limits): bytes that are
not UTF-8, escapes of lone surrogates, numbers JSON allows but 64 bits cannot hold, ids that
are not JSON, and connection caps. A refused line changes nothing, and every reply line is
strict JSON in strict UTF-8, whatever came in."""
import json
import os
import socket
import subprocess
import time

from harness import BROKERD, NOBODY, Client, DaemonTest, RpcError, as_user, main, rpcschema

SHARE = {"owner": "hw0", "device": "nic0", "size": 4096, "peers": [{"domain": "vm1", "access": "rw"}]}


def strict_json(line):
    """What a strict peer makes of a reply line: UTF-8 (no surrogates), JSON without NaN."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(line.decode("utf-8", errors="strict"), parse_constant=refuse)


def raw_exchange(client, data):
    """Sends one raw line; returns the reply line's bytes and the strict parse of them."""
    client.send_raw(data + b"\n")
    while b"\n" not in client.buf:
        msg = client.sock.recv(65536)
        if not msg:
            raise ConnectionResetError("brokerd closed the connection")
        client.buf += msg
    line, client.buf = client.buf.split(b"\n", 1)
    return line, strict_json(line)


def request(method, params, rid=1):
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()


class Utf8(DaemonTest):
    BAD = [b"\xc0\xaf",          # overlong '/'
           b"\xe0\x80\xaf",      # overlong '/', three bytes
           b"\xed\xa0\x80",      # U+D800 encoded
           b"\xed\xbf\xbf",      # U+DFFF encoded
           b"\xf4\x90\x80\x80",  # beyond U+10FFFF
           b"\x80",              # a continuation byte alone
           b"\xe2\x82"]          # cut short

    def state(self, adm):
        return (adm.call("region.list", {})["regions"], adm.call("admin.audit", {"limit": 1000})["entries"])

    def assert_parse_error(self, line, reply, bad=b""):
        rpcschema.validate_reply(None, reply)
        self.assertEqual(reply["error"]["code"], -32700, reply)
        self.assertIsNone(reply["id"])
        if bad:
            self.assertNotIn(bad, line)

    def test_invalid_utf8_is_refused_and_never_stored(self):
        agent, adm = self.d.agent(), self.d.admin()
        before = self.state(adm)
        for bad in self.BAD:
            label = request("region.share", {**SHARE, "label": "@"}).replace(b"@", b"x" + bad)
            line, reply = raw_exchange(agent, label)
            self.assert_parse_error(line, reply, bad)
            # in the method's name, a member name, the id: the same, and nothing echoed
            for data in (b'{"jsonrpc": "2.0", "id": 1, "method": "region.' + bad + b'"}',
                         b'{"jsonrpc": "2.0", "id": 1, "method": "broker.info", "params": {"' + bad + b'": 1}}',
                         b'{"jsonrpc": "2.0", "id": "' + bad + b'", "method": "broker.info"}'):
                line, reply = raw_exchange(agent, data)
                self.assert_parse_error(line, reply, bad)
        self.assertEqual(self.state(adm), before)
        self.assertEqual(agent.call("broker.info", {})["admin"], False)

    def test_lone_surrogate_escapes_are_refused(self):
        agent, adm = self.d.agent(), self.d.admin()
        before = self.state(adm)
        for esc in (rb"\ud800", rb"\udbff\u0041", rb"\udc00", rb"x\ud83d", rb"\ude00\ud83d"):
            line, reply = raw_exchange(agent, request("region.share", {**SHARE, "label": "@"}).replace(b"@", esc))
            self.assert_parse_error(line, reply)
        self.assertEqual(self.state(adm), before)

    def test_valid_text_is_stored_and_served_exactly(self):
        agent, adm = self.d.agent(), self.d.admin()
        label = "caf\u00e9 \u20ac \U0001f600 \U0010ffff \ufffd"
        # once as UTF-8, once as escapes (a surrogate pair among them)
        for data in (json.dumps({"jsonrpc": "2.0", "id": 1, "method": "region.share",
                                 "params": {**SHARE, "label": label}}, ensure_ascii=False).encode(),
                     request("region.share", {**SHARE, "label": label})):
            line, reply = raw_exchange(agent, data)  # the fd is not taken: the kernel closes it
            got = adm.call("region.get", {"region": reply["result"]["region"]})
            self.assertEqual(got["label"], label)


class Ids(DaemonTest):
    def test_ids_that_are_not_json_or_not_exact_are_refused(self):
        agent = self.d.agent()
        for rid in (b"NaN", b"Infinity", b"-Infinity", b"18446744073709551616", b"-9223372036854775809",
                    b"1" + b"0" * 30, b"1e400", b"-1e309", b"01", b"-0"):
            line, reply = raw_exchange(agent, b'{"jsonrpc": "2.0", "id": ' + rid + b', "method": "broker.info"}')
            rpcschema.validate_reply(None, reply)
            self.assertEqual(reply["error"]["code"], -32700, rid)
            self.assertIsNone(reply["id"], rid)
        # and in params: the handler never sees a number json-c made up
        line, reply = raw_exchange(agent, request("region.share", {**SHARE, "size": 1 << 64}))
        self.assertEqual(reply["error"]["code"], -32700)
        line, reply = raw_exchange(agent, request("region.share", SHARE).replace(b"4096", b"NaN"))
        self.assertEqual(reply["error"]["code"], -32700)
        self.assertEqual(self.d.admin().call("region.list", {})["regions"], [])

    def test_every_other_id_comes_back_exactly(self):
        agent = self.d.agent()
        for rid in (b"18446744073709551615", b"-9223372036854775808", b"0", b"1.5", b"1E2", b"-0.0",
                    b"0.1000000000000000000001", b'"NaN"', b'"\\u00e9"', b"null"):
            line, reply = raw_exchange(agent, b'{"jsonrpc": "2.0", "id": ' + rid + b', "method": "broker.info"}')
            self.assertIn(b'"id":' + rid + b",", line.replace(b'"\xc3\xa9"', b'"\\u00e9"'))
            self.assertIn("result", reply)

    def test_a_notification_is_not_answered(self):
        agent = self.d.agent()
        agent.send_raw(b'{"jsonrpc": "2.0", "method": "broker.info"}\n')
        self.assertEqual(agent.call("broker.info", {})["admin"], False)


class Caps(DaemonTest):
    """The global cap and the one for uids the policy does not know (daemon flags)."""
    extra_args = ("--max-connections", "4", "--max-connections-unknown-uid", "1")
    STRANGER = 4242  # in no policy entry

    def assert_refused_at_connect(self, c, why):
        reply = c.read_reply()
        self.assertEqual(reply["error"]["data"]["name"], "limit_exceeded")
        self.assertIn(why, reply["error"]["message"])
        self.assertEqual(c.sock.recv(1), b"")

    def test_global_cap(self):
        clients = [self.d.agent(), self.d.agent(), self.d.admin(), self.d.agent()]
        for c in clients:
            c.call("broker.info", {})
        self.assert_refused_at_connect(self.d.agent(), "too many connections")
        self.assert_refused_at_connect(self.d.admin(), "too many connections")
        # once one goes there is room again (its EOF may reach the daemon after the next connect)
        clients[0].close()
        deadline = time.monotonic() + 5
        while True:
            c = Client(self.d.agent_socket)
            try:
                self.assertEqual(c.call("broker.info", {})["admin"], False)
                break
            except RpcError as e:
                self.assertEqual(e.name, "limit_exceeded")
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            finally:
                c.close()

    def test_unknown_uid_cap(self):
        sock = self.d.agent_socket

        def run():
            out = []
            first = Client(sock)
            out.append(first.call("broker.info", {})["uid"])
            second = Client(sock)
            try:
                second.call("broker.info", {})
                out.append("connected")
            except BrokenPipeError:
                # refused and closed before the request went out: the refusal is still queued
                out.append(second.read_reply()["error"]["message"])
            except Exception as e:
                out.append(str(e))
            return out

        out = as_user(self.STRANGER, NOBODY, run)  # gid nogroup: the agent socket's group
        self.assertEqual(out[0], self.STRANGER, out)
        self.assertIn("does not know", out[1])
        # a uid the policy knows is held to the per-uid cap only
        out = as_user(NOBODY, NOBODY, run)
        self.assertEqual(out, [NOBODY, "connected"])


if __name__ == "__main__":
    main()
