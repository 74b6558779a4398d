#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""region.list in pages against the real daemon (docs/protocol.md "Paging"): the cursor lists every
region exactly once, by increasing id, with every filter and while regions come and go; bad paging
params are refused and change nothing; no reply line exceeds --max-message; `brokerctl list` pages
(one request a page) and prints what a single page would. Every reply is checked against
schemas/rpc by the harness.
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import rpcschema  # noqa: E402  (harness put tests/schema on the path)

INVALID_PARAMS = -32602
INVALID_REQUEST = 1001

# The harness's policy with room for more regions than a few pages.
POLICY = json.loads(json.dumps(harness.POLICY))
POLICY["quotas"] = [{"domain": "hw0", "max_bytes": "256MiB", "max_regions": 200}]


class LineClient(harness.Client):
    """Also records the length of every line read (a reply line must stay within --max-message)."""

    def __init__(self, path):
        super().__init__(path)
        self.longest = 0

    def read_line(self):
        while b"\n" not in self.buf:
            msg, fds, _, _ = harness.socket.recv_fds(self.sock, 65536, 253)
            self.fds.extend(fds)
            if not msg:
                raise ConnectionResetError("brokerd closed the connection")
            self.buf += msg
        line, self.buf = self.buf.split(b"\n", 1)
        self.longest = max(self.longest, len(line))
        return json.loads(line)


class Base(unittest.TestCase):
    EXTRA_ARGS = ()

    def setUp(self):
        self.d = harness.Daemon(policy=POLICY, extra_args=self.EXTRA_ARGS).start()
        self.c = self.d.agent()
        self.adm = self.d.admin()

    def tearDown(self):
        self.d.cleanup()

    def share(self, i, label=None):
        """Region i: every fifth on gpu0 with vm1 and vm2, else nic0 with vm1 (even) or vm2 (odd)."""
        if i % 5 == 0:
            params = {"owner": "hw0", "device": "gpu0", "size": "2MiB",
                      "peers": [{"domain": "vm1", "access": "ro"}, {"domain": "vm2", "access": "ro"}]}
        else:
            peer = "vm1" if i % 2 == 0 else "vm2"
            params = {"owner": "hw0", "device": "nic0", "size": 4096,
                      "peers": [{"domain": peer, "access": "rw" if peer == "vm1" else "ro"}]}
        if label:
            params["label"] = label
        res = self.c.call("region.share", params)
        os.close(self.c.fds.pop())
        return res

    def walk(self, client, limit, between=None, **filters):
        """Pages until next is absent; checks each page and returns every region in order."""
        after, seen, pages = 0, [], 0
        while True:
            params = dict(filters, after=after)
            if limit:
                params["limit"] = limit
            page = client.call("region.list", params)
            pages += 1
            ids = [r["region"] for r in page["regions"]]
            self.assertTrue(all(x > after for x in ids))
            self.assertEqual(ids, sorted(ids))
            if limit:
                self.assertLessEqual(len(ids), limit)
            seen += page["regions"]
            if "next" not in page:
                return seen, pages
            self.assertEqual(page["next"], ids[-1])
            after = page["next"]
            if between:
                between(pages)


class PagingTest(Base):
    def test_every_region_once_with_filters(self):
        shared = [self.share(i) for i in range(45)]
        tokens = {s["region"]: s["tokens"] for s in shared}
        # Some regions become active: vm1 attaches to every third region it is a peer of.
        for s in shared[::3]:
            for t in s["tokens"]:
                if t["domain"] == "vm1":
                    self.c.call("region.attach", {"domain": "vm1", "token": t["token"]})
        whole = self.adm.call("region.list", {"limit": 4096})
        self.assertNotIn("next", whole)
        regions = whole["regions"]
        self.assertEqual([r["region"] for r in regions], sorted(tokens))
        filters = [{}, {"domain": "vm2"}, {"device": "gpu0"}, {"pool": "net0"}, {"state": "active"},
                   {"domain": "vm1", "state": "offered"}, {"domain": "vm1", "device": "nic0", "pool": "net0"}]

        def matches(r, f):
            parties = [r["owner"]] + [p["domain"] for p in r["peers"]]
            return all([f.get("domain", r["owner"]) in parties, f.get("device", r["device"]) == r["device"],
                        f.get("pool", r["pool"]) == r["pool"], f.get("state", r["state"]) == r["state"]])

        for f in filters:
            want = [r["region"] for r in regions if matches(r, f)]
            self.assertTrue(want, f)
            for limit in (1, 4, 7, 0):
                with self.subTest(filters=f, limit=limit):
                    seen, pages = self.walk(self.c, limit, **f)
                    self.assertEqual([r["region"] for r in seen], want)
                    if limit:
                        self.assertEqual(pages, max(1, -(-len(want) // limit)))

    def test_regions_change_while_paging(self):
        ids = [self.share(i)["region"] for i in range(20)]
        added = []

        def churn(page):
            if page == 2:
                # One listed already and one not yet listed are reclaimed; two new ones are shared.
                for region in (ids[1], ids[14]):
                    self.c.call("region.revoke", {"owner": "hw0", "region": region, "force": True})
                added.extend(self.share(i)["region"] for i in (21, 22))

        seen, _ = self.walk(self.adm, 5, between=churn)
        got = [r["region"] for r in seen]
        self.assertEqual(got, ids[:14] + ids[15:] + added)
        self.assertEqual(len(got), len(set(got)))
        self.assertTrue(min(added) > max(ids))

    def test_bad_params_change_nothing(self):
        for i in range(6):
            self.share(i)
        before = (self.adm.call("region.list", {})["regions"], self.adm.call("admin.audit", {"limit": 1000}))
        bad = [({"limit": 0}, INVALID_REQUEST), ({"limit": 4097}, INVALID_REQUEST),
               ({"limit": -1}, INVALID_PARAMS), ({"limit": 2.5}, INVALID_PARAMS), ({"limit": "many"}, INVALID_PARAMS),
               ({"limit": [3]}, INVALID_PARAMS), ({"after": "abc"}, INVALID_PARAMS), ({"after": -1}, INVALID_PARAMS),
               ({"after": 1.5}, INVALID_PARAMS), ({"after": {}}, INVALID_PARAMS), ({"cursor": 3}, INVALID_PARAMS),
               ({"after": 2, "limit": 0, "domain": "vm1"}, INVALID_REQUEST)]
        for params, code in bad:
            with self.subTest(params=params):
                with self.assertRaises(harness.RpcError) as cm:
                    self.c.call("region.list", params)
                self.assertEqual(cm.exception.code, code)
                if code == INVALID_PARAMS:
                    self.assertIn(cm.exception.error["data"]["member"], params)
                else:
                    self.assertEqual(cm.exception.name, "invalid_request")
        after = (self.adm.call("region.list", {})["regions"], self.adm.call("admin.audit", {"limit": 1000}))
        self.assertEqual(after, before)

    def test_live_page_matches_schema(self):
        ids = [self.share(i)["region"] for i in range(3)]
        req = {"jsonrpc": "2.0", "id": 7, "method": "region.list", "params": {"after": ids[0], "limit": 1}}
        rpcschema.validate_request(req)
        self.c.send_raw((json.dumps(req) + "\n").encode())
        reply = self.c.read_reply()
        rpcschema.validate_reply("region.list", reply)
        self.assertEqual(reply["result"]["next"], ids[1])
        self.assertEqual([r["region"] for r in reply["result"]["regions"]], [ids[1]])
        with self.assertRaises(AssertionError):  # next must be a region id
            rpcschema.validate_reply("region.list", dict(reply, result=dict(reply["result"], next=0)))

    def brokerctl_requests(self, *args):
        """brokerctl's output and how many requests it made (admin.stats before and after)."""
        before = self.adm.call("admin.stats")["requests"]
        out = self.d.brokerctl(*args).stdout
        return out, self.adm.call("admin.stats")["requests"] - before - 1

    def test_brokerctl_list_pages(self):
        for i in range(12):
            self.share(i, label="region %d" % i)
        one_page, calls = self.brokerctl_requests("list")
        self.assertEqual(calls, 1)
        paged, calls = self.brokerctl_requests("list", "--page-size", "5")
        self.assertEqual(calls, 3)
        self.assertEqual(paged, one_page)
        self.assertEqual(len(paged.splitlines()), 13)
        listed = self.adm.call("region.list", {})
        for args in ((), ("--domain", "vm2"), ("--device", "gpu0")):
            with self.subTest(args=args):
                whole = self.d.brokerctl("--json", "list", *args).stdout
                for size in ("1", "2", "5"):
                    self.assertEqual(self.d.brokerctl("--json", "list", "--page-size", size, *args).stdout, whole)
                want = [r for r in listed["regions"]
                        if not args or args[1] in ([r["device"]] + [p["domain"] for p in r["peers"]])]
                self.assertEqual(json.loads(whole), {"regions": want})
        self.assertEqual(json.loads(self.d.brokerctl("--json", "list", "--state", "active").stdout), {"regions": []})
        p = self.d.brokerctl("list", "--page-size", "0", check=False)
        self.assertEqual(p.returncode, 2)
        p = self.d.brokerctl("list", "--page-size", "4097", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("invalid_request", p.stderr)


class MessageLimitTest(Base):
    """With --max-message 4096 pages end by bytes before limit does, and no reply line is longer
    than the limit."""
    EXTRA_ARGS = ("--max-message", "4096")

    def setUp(self):
        super().setUp()
        self.lc = LineClient(self.d.admin_socket)
        self.d.clients.append(self.lc)

    def test_reply_lines_within_limit(self):
        ids = [self.share(i, label="%0128d" % i)["region"] for i in range(40)]
        seen, pages = self.walk(self.lc, 0)
        self.assertEqual([r["region"] for r in seen], ids)
        # The regions' text fills 4096 - 512 bytes a page at most: so many pages at least.
        text = sum(len(json.dumps(r, separators=(",", ":"))) + 1 for r in seen)
        self.assertGreaterEqual(pages, -(-text // (4096 - 512)))
        self.assertGreater(pages, 1)
        self.assertLessEqual(self.lc.longest, 4096)
        self.assertGreater(self.lc.longest, 4096 - 1024)
        seen, pages = self.walk(self.lc, 3, domain="vm2")
        self.assertEqual([r["region"] for r in seen], [i for k, i in enumerate(ids) if k % 5 == 0 or k % 2])
        self.assertLessEqual(self.lc.longest, 4096)


if __name__ == "__main__":
    unittest.main(verbosity=2)
