#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""brokerd with many live regions (docs/bench-scale.md): bench/run-scale-bench.sh runs it.

Two daemons run side by side, each in a directory of its own with its own database, sockets
and fd store (this process plays systemd's: $NOTIFY_SOCKET, FDSTORE=1/FDSTOREREMOVE=1, and at
each start the stored fds as 3.. with LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID): "small" holds
--small regions, "big" --regions. Both get the same requests up to the small one's count. It
prints what creating the regions took, each daemon's RSS, region.share latency on both
(alternating rounds), paging through every region with region.list and with `brokerctl list`,
the fds brokerd holds, and the time a restart takes on the same database (exec to READY=1, and
to the first broker.info answered). It asserts nothing about time; it fails (exit 1) only when
the daemon does not do what it is asked.
"""
import argparse
import array
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

ANCILLARY = socket.CMSG_SPACE(253 * array.array("i").itemsize)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def take_fds(anc):
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return list(fds)


class FdStore:
    """systemd's fd store for one unit (tests/integration/fdstore.py, without its checks and
    its linear same-file scan)."""

    def __init__(self, path):
        self.path = path
        self.fds = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.ready_at = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(path)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                msg, anc, _, _ = self.sock.recvmsg(4096, ANCILLARY)
            except OSError:
                return
            fds = take_fds(anc)
            fields = dict(line.split("=", 1) for line in msg.decode(errors="replace").split("\n") if "=" in line)
            name = fields.get("FDNAME", "stored")
            with self.lock:
                if fields.get("READY") == "1" and not self.ready.is_set():
                    self.ready_at = time.monotonic()
                    self.ready.set()
                if fields.get("FDSTOREREMOVE") == "1" and name in self.fds:
                    os.close(self.fds.pop(name))
                if fields.get("FDSTORE") == "1" and len(fds) == 1:
                    if name in self.fds:
                        os.close(self.fds.pop(name))
                    os.set_inheritable(fds[0], False)
                    self.fds[name] = fds[0]
                else:
                    for fd in fds:
                        os.close(fd)

    def spawn(self, argv, stderr_fd):
        """argv as the unit's main process with the stored fds as 3..; (pid, monotonic time of
        the spawn). Sorted by number, each fd is at or above its place, so dup2() in that order
        never lands on one still to be moved; one already in place is made inheritable here."""
        with self.lock:
            entries = sorted(self.fds.items(), key=lambda e: e[1])
            self.ready.clear()
            self.ready_at = None
        env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID")}
        env["NOTIFY_SOCKET"] = self.path
        actions = [(os.POSIX_SPAWN_DUP2, stderr_fd, 2)]
        in_place = [fd for i, (_, fd) in enumerate(entries) if fd == 3 + i]
        if entries:
            env["LISTEN_FDS"] = str(len(entries))
            env["LISTEN_FDNAMES"] = ":".join(name for name, _ in entries)
            actions += [(os.POSIX_SPAWN_DUP2, fd, 3 + i) for i, (_, fd) in enumerate(entries) if fd != 3 + i]
        cmd = ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', *argv]
        for fd in in_place:
            os.set_inheritable(fd, True)
        try:
            t0 = time.monotonic()
            return os.posix_spawn("/bin/sh", cmd, env, file_actions=actions), t0
        finally:
            for fd in in_place:
                os.set_inheritable(fd, False)

    def close(self):
        self.sock.close()
        with self.lock:
            for fd in self.fds.values():
                os.close(fd)
            self.fds = {}


class Conn:
    """JSON-RPC over the daemon's socket, newline framed; every fd a reply brings is closed."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1

    def send(self, method, params):
        self.sock.sendall(json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method,
                                      "params": params}).encode() + b"\n")
        self.next_id += 1

    def recv(self):
        while b"\n" not in self.buf:
            data, anc, _, _ = self.sock.recvmsg(1 << 16, ANCILLARY)
            for fd in take_fds(anc):
                os.close(fd)
            if not data:
                raise RuntimeError("brokerd closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError("brokerd answered %s" % json.dumps(reply["error"]))
        return reply["result"]

    def call(self, method, params=None):
        self.send(method, params or {})
        return self.recv()

    def close(self):
        self.sock.close()


SHARE = {"owner": "hw0", "device": "nic0", "size": 4096, "peers": [{"domain": "vm1", "access": "rw"}]}


def share_region(c):
    r = c.call("region.share", SHARE)
    if r.get("placement") != "region":
        raise RuntimeError("region.share bounced: %s" % json.dumps(r))
    return r["region"]


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def nofile_limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return line.split()[3:5]
    return ["?", "?"]


def pct(sorted_samples, p):
    return sorted_samples[min(len(sorted_samples) - 1, max(0, int(round(p / 100 * len(sorted_samples) + 0.5)) - 1))]


class Daemon:
    def __init__(self, args, name, pool_size):
        self.args = args
        self.name = name
        self.dir = os.path.join(args.dir, name)
        os.mkdir(self.dir)
        self.agent = os.path.join(self.dir, "agent.sock")
        self.admin = os.path.join(self.dir, "admin.sock")
        self.log_path = os.path.join(self.dir, "brokerd.log")
        self.pid = None
        pool = {"name": "small0", "base": "1GiB", "size": pool_size, "numa_node": 0, "granule": "4KiB",
                "backing": {"kind": "memfd"}}
        if args.backing == "shm":
            os.mkdir(os.path.join(self.dir, "pool"))
            pool["backing"] = {"kind": "shm", "path": os.path.join(self.dir, "pool")}
        platform = {"memory": [{"name": "bank0", "base": 0, "size": "64GiB", "numa_node": 0}],
                    "pools": [pool],
                    "devices": [{"name": "nic0", "owner": "hw0", "dma_mask_bits": 64}]}
        policy = {"agents": [{"uid": os.getuid(), "domains": ["hw0", "vm1"]}],
                  "shares": [{"sharer": "hw0", "device": "nic0", "peers": ["vm1"], "access": "rw"}],
                  "quotas": [{"domain": "hw0", "max_regions": args.regions + 1024}]}
        for what, obj in (("platform", platform), ("policy", policy)):
            with open(os.path.join(self.dir, what + ".json"), "w") as f:
                json.dump(obj, f)
        self.store = FdStore(os.path.join(self.dir, "notify.sock")) if args.fdstore else None

    def argv(self):
        return [self.args.brokerd, "--platform", os.path.join(self.dir, "platform.json"),
                "--policy", os.path.join(self.dir, "policy.json"), "--db", os.path.join(self.dir, "brokerd.db"),
                "--agent-socket", self.agent, "--admin-socket", self.admin, "--log-target", "stderr",
                "--retain-regions", "0"]

    def start(self):
        """(exec to READY=1 or sockets, exec to the first broker.info answered), in seconds."""
        for s in (self.agent, self.admin):
            if os.path.exists(s):
                os.unlink(s)
        logfd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            if self.store:
                self.pid, t0 = self.store.spawn(self.argv(), logfd)
            else:
                t0 = time.monotonic()
                self.pid = os.posix_spawn(self.argv()[0], self.argv(), dict(os.environ),
                                          file_actions=[(os.POSIX_SPAWN_DUP2, logfd, 2)])
        finally:
            os.close(logfd)
        with open(os.path.join(self.args.dir, "pids"), "a") as f:
            f.write("%d\n" % self.pid)
        while True:
            if self.store and self.store.ready.is_set():
                ready = self.store.ready_at
                break
            if not self.store and os.path.exists(self.agent) and os.path.exists(self.admin):
                ready = time.monotonic()
                break
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                self.pid = None
                raise RuntimeError("%s brokerd exited at start:\n%s" % (self.name, self.log_tail()))
            time.sleep(0.0005)
        c = Conn(self.agent)
        c.call("broker.info")
        answered = time.monotonic()
        c.close()
        return ready - t0, answered - t0

    def stop(self):
        t0 = time.monotonic()
        os.kill(self.pid, signal.SIGTERM)
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        if status != 0:
            raise RuntimeError("%s brokerd exited with status %d:\n%s" % (self.name, status, self.log_tail()))
        return time.monotonic() - t0

    def kill(self):
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        if self.store:
            self.store.close()

    def log_tail(self):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-20:])

    def status(self):
        return proc_status(self.pid)

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))


def create(d, n, window):
    """n regions shared on one connection, window requests in flight; seconds taken."""
    c = Conn(d.agent)
    t0 = time.monotonic()
    sent = done = 0
    while done < n:
        while sent < n and sent - done < window:
            c.send("region.share", SHARE)
            sent += 1
        r = c.recv()
        if r.get("placement") != "region":
            raise RuntimeError("region.share bounced: %s" % json.dumps(r))
        done += 1
        if done % 10000 == 0:
            log("  %s: %d regions shared (%.1fs)" % (d.name, done, time.monotonic() - t0))
    took = time.monotonic() - t0
    c.close()
    return took


def share_samples(c, k, states):
    """k region.share round trips, each region revoked (forced, timed too) before the next:
    the newest region of a route with every other live region on it, which is where taking a
    region off its route used to scan longest. states counts what the revokes answered.
    Returns (share round trips, revoke round trips), us."""
    shares, revokes = [], []
    for _ in range(k):
        t0 = time.perf_counter()
        region = share_region(c)
        t1 = time.perf_counter()
        state = c.call("region.revoke", {"owner": "hw0", "region": region, "force": True})["state"]
        revokes.append((time.perf_counter() - t1) * 1e6)
        shares.append((t1 - t0) * 1e6)
        states[state] = states.get(state, 0) + 1
    return shares, revokes


def page_all(d, limit):
    """(seconds, pages, regions) to page through every region on the admin socket."""
    c = Conn(d.admin)
    t0 = time.monotonic()
    after = pages = seen = 0
    while True:
        params = {"after": after} if after else {}
        if limit:
            params["limit"] = limit
        r = c.call("region.list", params)
        pages += 1
        seen += len(r["regions"])
        if "next" not in r:
            break
        after = r["next"]
    took = time.monotonic() - t0
    c.close()
    return took, pages, seen


def brokerctl_list(d):
    t0 = time.monotonic()
    subprocess.run([d.args.brokerctl, "--socket", d.admin, "list"], stdout=subprocess.DEVNULL, check=True)
    return time.monotonic() - t0


def kib(v):
    return "%.1f MiB" % (v / 1024)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--brokerd", required=True)
    p.add_argument("--brokerctl", required=True)
    p.add_argument("--dir", required=True, help="an empty directory for both daemons' files")
    p.add_argument("--regions", type=int, default=100000)
    p.add_argument("--small", type=int, default=10)
    p.add_argument("--backing", choices=("memfd", "shm"), default="memfd")
    p.add_argument("--no-fdstore", dest="fdstore", action="store_false")
    p.add_argument("--window", type=int, default=32, help="region.share requests in flight while creating")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--samples", type=int, default=200, help="region.share samples per round and daemon")
    p.add_argument("--perf-restart", metavar="FILE",
                   help="record the big daemon's restart with perf (system-wide, cpu-clock, call graphs) into FILE")
    args = p.parse_args()
    n, small = args.regions, args.small
    if n <= small:
        p.error("--regions must be above --small")

    # brokerd holds one fd per region (its memfd or file); the owners' processes are one pidfd
    # a connection, but under the fd store one a region too (the store keeps one fd per open
    # file), and the store is this process: then both need twice N and some.
    per = 2 if args.fdstore else 1
    want = per * n + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError) as e:
        sys.exit("scale-bench: %d regions need RLIMIT_NOFILE >= %d, and the hard limit is %d (%s): at most "
                 "%d regions here; raising the hard limit takes CAP_SYS_RESOURCE" % (
                     n, want, hard, e.strerror if isinstance(e, OSError) else e, (hard - 1024) // per))
    pool_size = (n + 2048) * 4096

    daemons = [Daemon(args, "small", pool_size), Daemon(args, "big", pool_size)]
    sm, big = daemons
    try:
        run(args, sm, big)
    finally:
        for d in daemons:
            d.kill()


def run(args, sm, big):
    n, small = args.regions, args.small
    print("N = %d live regions (big) against %d (small); %s pool, 4 KiB regions, %s" % (
        n, small, args.backing, "under an fd store (this process plays systemd's)" if args.fdstore
        else "no fd store"))
    print("brokerd's RLIMIT_NOFILE: soft %s, hard %s (inherited from the bench)" % tuple(
        nofile_limits(os.getpid())))
    for d in (sm, big):
        d.start()
    base = {}
    for d in (sm, big):
        create(d, small, args.window)
        base[d.name] = d.status()
    log("creating %d regions on big" % n)
    took = create(big, n - small, args.window)
    print()
    print("create: %d x region.share on one connection, %d in flight: %.1f s = %.0f regions/s" % (
        n - small, args.window, took, (n - small) / took))
    after_create = big.status()

    # Share latency: the same samples on both, alternating which goes first each round.
    lat = {"small": [], "big": []}
    rev = {"small": [], "big": []}
    states = {}
    conns = {d.name: Conn(d.agent) for d in (sm, big)}
    for i in range(args.rounds):
        for d in ((sm, big) if i % 2 == 0 else (big, sm)):
            shares, revokes = share_samples(conns[d.name], args.samples, states)
            lat[d.name] += shares
            rev[d.name] += revokes
    for c in conns.values():
        c.close()
    for what, samples, goal in (("region.share", lat, "   (goal: p50 <= 1.2x)"),
                                ("region.revoke (forced, of the route's newest region)", rev, "")):
        print()
        print("%s round trip, us (%d rounds x %d samples each, alternating; each region revoked before the next)" % (
            what, args.rounds, args.samples))
        print("  %-22s %10s %10s %10s" % ("live regions", "p50", "p99", "mean"))
        st = {}
        for d in (sm, big):
            s = sorted(samples[d.name])
            st[d.name] = (pct(s, 50), pct(s, 99), sum(s) / len(s))
            print("  %-22s %10.1f %10.1f %10.1f" % ("%d (%s)" % (small if d is sm else n, d.name), *st[d.name]))
        print("  %-22s %9.2fx %9.2fx %9.2fx%s" % (
            "big / small", *(b / s for b, s in zip(st["big"], st["small"])), goal))
    print("  the forced revokes answered: %s; regions left on small: %d" % (
        ", ".join("%s %d" % kv for kv in sorted(states.items())), page_all(sm, 0)[2]))

    print()
    print("paging through every region on the admin socket (big):")
    for limit in (0, 4096):
        took, pages, seen = page_all(big, limit)
        print("  region.list, limit %-13s %7.3f s, %d pages, %d regions (%.1f us a region)" % (
            "%d:" % limit if limit else "default:", took, pages, seen, took / max(seen, 1) * 1e6))
        if seen < n:
            raise RuntimeError("region.list paged through %d regions, not %d" % (seen, n))
    took = brokerctl_list(big)
    print("  brokerctl list > /dev/null   %7.3f s (%.1f us a region)" % (took, took / n * 1e6))
    took = brokerctl_list(sm)
    print("  brokerctl list, small        %7.3f s" % took)

    print()
    print("fds held: big %d, small %d (%.3f a region beyond small); limit soft %s, hard %s" % (
        big.fds(), sm.fds(), (big.fds() - sm.fds()) / (n - small), *nofile_limits(big.pid)))
    if big.store:
        print("fd store holds: big %d, small %d" % (len(big.store.fds), len(sm.store.fds)))

    print()
    print("restart (SIGTERM, then exec on the same database%s):" % (
        " with the store's fds" if args.fdstore else ""))
    starts = {}
    for d in (sm, big):
        stop = d.stop()
        perf = None
        if args.perf_restart and d is big:
            perf = subprocess.Popen(["perf", "record", "-q", "-a", "-g", "-e", "cpu-clock", "-o", args.perf_restart],
                                    stdout=subprocess.DEVNULL)
            time.sleep(1)
        try:
            starts[d.name] = d.start()
        except OSError as e:
            print("  %-6s stopped in %.3f s; cannot start again: %s" % (d.name, stop, e))
            if d.store:
                names = sum(len(k) + 1 for k in d.store.fds)
                print("         (LISTEN_FDNAMES would be %d bytes; the kernel takes at most 131072 in one"
                      " environment string, MAX_ARG_STRLEN)" % names)
            continue
        finally:
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait()
        print("  %-6s stopped in %.3f s; exec -> READY=1 %.3f s, -> first broker.info answered %.3f s" % (
            d.name, stop, *starts[d.name]))
    if "big" in starts and "small" in starts:
        print("  big / small: %.2fx to READY=1 (goal: big <= 2 s); fds held after it: big %d, small %d" % (
            starts["big"][0] / starts["small"][0], big.fds(), sm.fds()))

    print()
    print("RSS (/proc/PID/status), per region beyond the baseline (goal: <= 2048 bytes):")
    rows = [("after creating", "big itself at %d regions" % small, base["big"], after_create)]
    if big.pid and sm.pid:
        rows.append(("after the restart", "small, restarted too", sm.status(), big.status()))
    for what, against, b0, b in rows:
        print("  %-18s %s, baseline (%s) %s" % (what, kib(b["VmRSS"]), against, kib(b0["VmRSS"])))
        print("  %-18s %.0f bytes a region (anon %.0f, file %.0f, shmem %.0f)" % (
            "", (b["VmRSS"] - b0["VmRSS"]) * 1024 / (n - small),
            *((b[k] - b0[k]) * 1024 / (n - small) for k in ("RssAnon", "RssFile", "RssShmem"))))
    if big.pid:
        print("  big's peak (VmHWM): %s" % kib(big.status()["VmHWM"]))

if __name__ == "__main__":
    main()
