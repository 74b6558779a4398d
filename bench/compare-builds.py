#!/usr/bin/env python3
"""Compares two builds of brokerd side by side on one machine, in turn, round after round.

    bench/compare-builds.py OLD_BUILD NEW_BUILD [--rounds N] [--iterations N] [--db-dir DIR] [--callgrind]

Each round starts OLD's brokerd, then NEW's (the order alternates every round), each with the
example platform and policy and a fresh database on /dev/shm (or in --db-dir, e.g. /var/tmp
for a disk), and drives both with NEW's
control-plane-bench; then runs each build's placement-bench. It prints, per figure, the median
over rounds for each build and the median of the per-round ratios NEW/OLD, so that a machine
that is busy during one round weighs on both builds alike; then each grant step against its
floor (the same round's no-op RPC plus bare commit), for both builds. Run as root (the example policy lets
uid 0 act for hw0 and vm1). A figure, not a test: it asserts nothing.

--pin D,C runs each daemon on CPU D and the client on CPU C (taskset): on a 2-CPU VM a daemon
that the scheduler happens to put on the client's CPU answers in a different time than one on
the other CPU, and which it gets changes from one start to the next, so unpinned rounds of one
build fall into two groups and single runs disagree by 30%.

With --callgrind it also runs each daemon once under valgrind's callgrind for the same client
workload and prints the instructions each executed: a count, not a time, so it does not move
with the machine's load.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = ("noop_rpc", "grant_cycle", "share", "attach", "revoke", "release", "release_reclaimed", "sqlite_commit")


def control_plane(build, client, iterations, wrapper=(), db_dir="/dev/shm", pin=None):
    d = tempfile.mkdtemp(prefix="brokerd-compare.", dir=db_dir)
    log = open(os.path.join(d, "brokerd.log"), "w")
    daemon_cpu, client_cpu = (["taskset", "-c", c] for c in pin) if pin else ([], [])
    daemon = subprocess.Popen([*daemon_cpu, *wrapper, os.path.join(build, "brokerd/daemon/brokerd"),
                               "--platform", os.path.join(ROOT, "docs/examples/platform.json"),
                               "--policy", os.path.join(ROOT, "docs/examples/policy.json"),
                               "--db", os.path.join(d, "brokerd.db"),
                               "--agent-socket", os.path.join(d, "agent.sock"),
                               "--admin-socket", os.path.join(d, "admin.sock"),
                               "--log-target", "stderr"], stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(d, "agent.sock")):
            if daemon.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"compare-builds: {build}'s brokerd did not start (log in {d})")
            time.sleep(0.05)
        out = subprocess.run([*client_cpu, client, "--socket", os.path.join(d, "agent.sock"), "--db-dir", d,
                              "--iterations", str(iterations), "--warmup", str(iterations // 10), "--json"],
                             check=True, capture_output=True, text=True).stdout
        return {row: v["p50_us"] for row, v in json.loads(out)["results"].items()}
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
        log.close()
        subprocess.run(["rm", "-rf", d], check=True)


def instructions(build, client, iterations):
    """Instructions the daemon executed from start to SIGTERM, serving `iterations` cycles."""
    out = tempfile.mktemp(prefix="brokerd-compare.", suffix=".cg", dir="/dev/shm")
    try:
        control_plane(build, client, iterations, ("valgrind", "--tool=callgrind", "--callgrind-out-file=" + out))
        with open(out) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
        sys.exit("compare-builds: no totals in callgrind's output")
    finally:
        if os.path.exists(out):
            os.unlink(out)


def placement(build):
    """ns per operation at the largest N the placement bench prints (its last table row)."""
    out = subprocess.run([os.path.join(build, "bench/placement-bench")], check=True, capture_output=True,
                         text=True).stdout
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    last = rows[-1]
    names = ("alloc-tail", "alloc-hole", "place-overlap", "place-ok")
    return {f"placement {n} (N={last[0]})": float(last[1 + 2 * i]) for i, n in enumerate(names)}


GRANT_STEPS = ("share", "attach", "revoke", "release", "release_reclaimed")


def floor_ratios(figures):
    """Each grant step against its floor, one no-op RPC plus one bare durable commit of the same
    daemon's round (issue 16's yardstick): the median over rounds of step / floor, per build."""
    print()
    print("grant step / floor (no-op RPC + bare commit of the same round), median of rounds")
    print("(release_reclaimed: from the release until a subscriber hears region.reclaimed; it makes two")
    print(" durable commits, the release and the reclaim, with the scrub between them)")
    print(f"{'step':38} {'old':>10} {'new':>10}")
    for step in GRANT_STEPS:
        row = []
        for which in ("old", "new"):
            ratios = [f[step] / (f["noop_rpc"] + f["sqlite_commit"]) for f in figures[which]
                      if step in f and f.get("noop_rpc", 0) + f.get("sqlite_commit", 0) > 0]
            row.append(statistics.median(ratios) if ratios else float("nan"))
        print(f"{step:38} {row[0]:10.2f} {row[1]:10.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--no-placement", action="store_true")
    ap.add_argument("--db-dir", default="/dev/shm", help="where the databases go (default /dev/shm)")
    ap.add_argument("--callgrind", action="store_true", help="also count the daemons' instructions (valgrind)")
    ap.add_argument("--pin", metavar="D,C", help="daemon on CPU D, client on CPU C (e.g. 1,0)")
    a = ap.parse_args()
    pin = a.pin.split(",") if a.pin else None
    if pin and len(pin) != 2:
        ap.error("--pin takes two CPUs: the daemon's and the client's")
    client = os.path.join(a.new, "bench/control-plane-bench")
    figures = {"old": [], "new": []}
    for r in range(a.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        got = {}
        for which in order:
            build = getattr(a, which)
            got[which] = control_plane(build, client, a.iterations, db_dir=a.db_dir, pin=pin)
            if not a.no_placement:
                got[which].update(placement(build))
        for which in order:
            figures[which].append(got[which])
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    print(f"p50 latency (control plane, us) and ns/op (placement); median of {a.rounds} rounds; "
          f"ratio = median of per-round new/old")
    print(f"{'figure':38} {'old':>10} {'new':>10} {'new/old':>8}")
    for key in figures["old"][0]:
        old = [f[key] for f in figures["old"]]
        new = [f[key] for f in figures["new"]]
        ratios = [n / o for n, o in zip(new, old) if o > 0]
        print(f"{key:38} {statistics.median(old):10.1f} {statistics.median(new):10.1f} "
              f"{statistics.median(ratios):8.2f}")
    floor_ratios(figures)
    if a.callgrind:
        n = min(a.iterations, 300)
        old, new = instructions(a.old, client, n), instructions(a.new, client, n)
        print(f"daemon instructions, {n} cycles (callgrind)  {old / 1e6:9.1f}M {new / 1e6:9.1f}M {new / old:8.3f}")


if __name__ == "__main__":
    main()
