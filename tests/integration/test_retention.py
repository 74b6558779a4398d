# SPDX-License-Identifier: Apache-2.0
"""What the database keeps and how an admin reads it: retention of reclaimed regions and
audit rows (docs/store.md), `brokerctl audit` showing the newest entries by default, and
`brokerctl domain-gone`."""
import json
import unittest

from harness import Daemon, DaemonTest, RpcError, db_snapshot, main


def reclaim_some(test, n):
    """n regions shared, revoked and reclaimed (a granted, unattached peer goes with them)."""
    a, adm = test.d.agent(), test.d.admin()
    for _ in range(n):
        r = test.share(a)
        adm.call("admin.revoke", {"region": r["region"], "force": True})
    a.close()


class AuditView(DaemonTest):
    def test_brokerctl_audit_all_pages_through_everything(self):
        reclaim_some(self, 5)
        want = self.d.admin().call("admin.audit", {"limit": 1000})["entries"]
        self.assertGreater(len(want), 5)
        got = json.loads(self.d.brokerctl("--json", "audit", "--all").stdout)["entries"]
        self.assertEqual(got, want)
        # --after starts there; a table has one line per entry plus the legend.
        after = want[2]["seq"]
        got = json.loads(self.d.brokerctl("--json", "audit", "--all", "--after", str(after)).stdout)["entries"]
        self.assertEqual(got, want[3:])
        table = self.d.brokerctl("audit", "--all").stdout.splitlines()
        self.assertEqual(len(table), len(want) + 1)
        self.assertTrue(table[0].startswith("SEQ"))

    def test_brokerctl_audit_usage(self):
        for args in (("-n", "0"), ("-n", "x"), ("-n", "3", "--all"), ("--all", "--limit", "5"),
                     ("-n", "3", "--after", "1"), ("-n", "3", "--since", "1h"), ("-n", "3", "--limit", "2")):
            p = self.d.brokerctl("audit", *args, check=False)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn("Usage:", p.stderr, args)
        p = self.d.brokerctl("list", "-n", "3", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("-n does not apply to 'list'", p.stderr)

    def test_brokerctl_audit_shows_the_newest_by_default(self):
        reclaim_some(self, 12)
        entries = self.d.admin().call("admin.audit", {"limit": 1000})["entries"]
        self.assertGreater(len(entries), 25)
        got = json.loads(self.d.brokerctl("--json", "audit").stdout)["entries"]
        self.assertEqual(got, entries[-20:])
        got = json.loads(self.d.brokerctl("--json", "audit", "-n", "3").stdout)["entries"]
        self.assertEqual(got, entries[-3:])
        got = json.loads(self.d.brokerctl("--json", "audit", "--lines", "1000").stdout)["entries"]
        self.assertEqual(got, entries)
        # The old selection still pages forward from the oldest.
        got = json.loads(self.d.brokerctl("--json", "audit", "--limit", "2").stdout)["entries"]
        self.assertEqual(got, entries[:2])
        adm = self.d.admin()
        self.assertEqual(adm.call("admin.audit", {"newest": 2})["entries"], entries[-2:])
        # newest narrows the forward selection's filters to their last entries
        self.assertEqual(adm.call("admin.audit", {"newest": 2, "after_seq": entries[0]["seq"]})["entries"],
                         entries[-2:])
        # Out of range, or with limit: invalid_request (docs/protocol.md).
        for bad in ({"newest": 0}, {"newest": 10001}, {"newest": 2, "limit": 2}):
            with self.assertRaises(RpcError, msg=bad) as e:
                adm.call("admin.audit", bad)
            self.assertEqual(e.exception.name, "invalid_request", bad)
        with self.assertRaises(RpcError) as e:
            adm.call("admin.audit", {"newest": [2]})
        self.assertEqual(e.exception.code, -32602)


class DomainGone(DaemonTest):
    def test_brokerctl_domain_gone(self):
        a = self.d.agent()
        kept = self.share(a, peers=(("vm2", "ro"),))
        r = self.share(a)
        token = r["tokens"][0]["token"]
        peer = self.d.agent()
        peer.call("region.attach", {"domain": "vm1", "token": token})

        p = self.d.brokerctl("domain-gone", "vm1")
        self.assertIn("vm1", p.stdout)
        # vm1's attachment is revoked; the other region is untouched.
        shown = json.loads(self.d.brokerctl("--json", "show", str(kept["region"])).stdout)
        self.assertEqual(shown["state"], "offered")
        audit = self.d.admin().call("admin.audit", {"limit": 1000})["entries"]
        self.assertTrue([e for e in audit if e["domain"] == "vm1" and e["region"] == r["region"]
                         and e["to"] == "revoked"], audit)

        got = json.loads(self.d.brokerctl("--json", "domain-gone", "hw0").stdout)
        self.assertEqual(got, {"domain": "hw0"})
        shown = self.d.brokerctl("--json", "show", str(kept["region"]), check=False)
        if shown.returncode == 0:
            self.assertEqual(json.loads(shown.stdout)["state"], "revoking")
        else:
            self.assertIn("no_such_region", shown.stderr)

        # Failing: no domain, two domains (usage), a name the daemon refuses (its error).
        for args in ((), ("vm1", "vm2")):
            p = self.d.brokerctl("domain-gone", *args, check=False)
            self.assertEqual(p.returncode, 2, args)
        p = self.d.brokerctl("domain-gone", "", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("invalid", p.stderr)


class Retention(unittest.TestCase):
    def test_daemon_keeps_a_bounded_past(self):
        d = Daemon(extra_args=["--retain-regions", "10", "--retain-audit", "40"]).start()
        try:
            test = unittest.TestCase()
            test.d = d
            test.share = lambda c, **kw: DaemonTest.share(test, c, **kw)
            reclaim_some(test, 150)
            live = test.share(d.agent())
            db = db_snapshot(d.db)
            regions = db.execute("SELECT count(*) FROM regions WHERE state = 'reclaimed'").fetchone()[0]
            audit = db.execute("SELECT count(*) FROM audit").fetchone()[0]
            alive = db.execute("SELECT count(*) FROM regions WHERE id = ?", (live["region"],)).fetchone()[0]
            db.close()
            # Pruned by the store after its commits: at most a pass's worth of commits behind.
            self.assertLessEqual(regions, 10 + 64)
            self.assertLessEqual(audit, 40 + 64 * 3)
            self.assertEqual(alive, 1)
            entries = d.admin().call("admin.audit", {"limit": 1000})["entries"]
            self.assertEqual(len(entries), audit)
        finally:
            rc = d.stop()
            d.cleanup()
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    main()
