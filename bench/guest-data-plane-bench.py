#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""data-plane-bench between two libvirt guests: libbrokerd-channel over an ivshmem-doorbell region
against TCP over a virtio-net link, the same cases, in one run (docs/bench-data-plane.md, "Between
two guests"). bench/run-guest-data-plane-bench.sh builds what it needs and runs this.

Two transient domains (PREFIX-a, PREFIX-b; tests/e2e/domain.xml: machine pc, 1 vCPU online of a
maximum of 2, or each of --vcpus in turn, a fresh pair for each; the e2e guest of
tests/e2e/build-guest.sh) are linked by a pair of <interface type='udp'> virtio NICs (10.211.0.1
and .2, no bridge). The doorbell region (--region-size bytes, 2 vectors) comes from
--brokerd: brokerd --backend libvirt, A's domain shares it with B's (doorbells=2), brokerd plugs
an ivshmem-doorbell device into each and serves them; or from --harness:
tests/e2e/ivshmem-server-harness admits exactly the two QEMUs (by pid) and this script plugs the
devices. In every round each transport runs once, in the order of --transports (TCP first, then
the channel's modes), so that TCP and the channel alternate (and with several --vcpus, each
configuration runs every transport in each round); in each guest tests/e2e/guest/guestbench
runs data-plane-bench's cases (bench/data-plane-cases.c), both sides in the background, watched
for progress (--stall-timeout), every lost doorbell wake-up counted against the sleeps. Prints
each round's figures, the channel's against that round's TCP, and the wake-ups per vCPU
configuration. Asserts nothing about time. Destroys the domains it created (by name) and stops
what it started (by pid).
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(HERE, "..", "tests", "e2e")
sys.path.insert(0, E2E)
import test_ivshmem_server  # noqa: E402
import e2e_guests as e2e  # noqa: E402

CASES = ["pp-14", "pp-64", "pp-1k", "pp-64k", "pp-1m", "st-1k", "st-64k", "st-1m"]
TRANSPORTS = ["tcp", "copy", "zc", "copy-nospin", "copy-poll", "zc-poll"]
LABELS = {"tcp": "tcp over virtio-net (TCP_NODELAY)", "copy": "channel copy, blocking",
          "zc": "channel zero-copy, blocking", "copy-nospin": "channel copy, blocking, spin 0",
          "copy-poll": "channel copy, busy-poll", "zc-poll": "channel zero-copy, busy-poll"}
NET = "10.211.0."
MAC = "52:54:00:b7:00:0"
DOORBELL_ALIAS = "ua-gbench-dbell"
RING_GRACE = 30  # seconds for a probed channel run to go on before it is stopped
CASE_LIMIT = 600  # seconds without a case ending before a run whose side is running is stopped


def log(msg):
    e2e.log(msg)


class BenchGuest(e2e.Guest):
    """An e2e guest with a virtio NIC on a udp link to its partner, and an address on eth0."""

    def __init__(self, name, rundir, index, ports, domain_type, vcpus):
        super().__init__(name, rundir)
        self.index = index
        self.ip = NET + str(index + 1)
        self.ports = ports  # (our UDP port, the partner's)
        self.domain_type = domain_type
        self.vcpus = vcpus  # (online, maximum)
        self.pid = None

    def xml(self):
        x = super().xml().replace("<domain type='qemu'>", f"<domain type='{self.domain_type}'>")
        x = re.sub(r"<vcpu\b[^>]*>\d+</vcpu>", f"<vcpu current='{self.vcpus[0]}'>{self.vcpus[1]}</vcpu>", x)
        x = x.replace("panic=-1</cmdline>", f"panic=-1 guest.ip={self.ip}/24</cmdline>")
        nic = (f"<interface type='udp'><mac address='{MAC}{self.index + 1}'/>"
               f"<source address='127.0.0.1' port='{self.ports[1]}'>"
               f"<local address='127.0.0.1' port='{self.ports[0]}'/></source>"
               f"<model type='virtio'/></interface>\n")
        return x.replace("  </devices>", "    " + nic + "  </devices>")

    def start(self):
        super().start()
        self.pid = self.qemu_pid()

    def qemu_gid(self):
        with open(f"/proc/{self.pid}/status") as f:
            return int(re.search(r"^Gid:\s+(\d+)", f.read(), re.M).group(1))

    def pin(self, cpu):
        """Every thread of the guest's QEMU (vCPU, main loop with the NIC and the doorbells) on cpu."""
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(self.pid)], check=True,
                       stdout=subprocess.DEVNULL)


def plug_doorbell(guest, socket_path, rundir):
    path = os.path.join(rundir, guest.name + ".dbell.xml")
    with open(path, "w") as f:
        f.write(f"<shmem name='{DOORBELL_ALIAS}'><model type='ivshmem-doorbell'/>"
                f"<server path='{socket_path}'/><msi vectors='2' ioeventfd='on'/>"
                f"<alias name='{DOORBELL_ALIAS}'/></shmem>\n")
    e2e.virsh("attach-device", guest.name, path, "--live")


class SizedHarness(test_ivshmem_server.Harness):
    """test_ivshmem_server's harness process, with a region of size bytes and a socket for group gid."""

    def __init__(self, binary, path, size, gid):
        self.proc = subprocess.Popen([binary, path, str(size), "2", str(gid)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        self.buf = ""
        self.expect_line("ready")


class HarnessServer:
    """The doorbell region's server: tests/e2e/ivshmem-server-harness, admitting the two guests."""

    def __init__(self, binary, rundir, size, guests):
        path = os.path.join(rundir, "doorbell.sock")
        # The socket's group is the QEMUs' (libvirt runs them as its own user).
        self.proc = SizedHarness(binary, path, size, guests[0].qemu_gid())
        try:
            for i, g in enumerate(guests):
                self.proc.command(f"expect dom-{g.name} {g.pid}")
                plug_doorbell(g, path, rundir)
                self.proc.expect_line(f"joined {i} dom-{g.name}")
        except BaseException:
            self.stop()
            raise
        self.describe = (f"tests/e2e/ivshmem-server-harness (brokerd's ivshmem server as a process, not the "
                         f"daemon): a memfd of {size} bytes, 2 vectors")

    def stop(self):
        self.proc.stop()


class BrokerdServer:
    """The doorbell region brokered: brokerd --backend libvirt shares it from A (its device nic0)
    with B, doorbells=2; brokerd hot-plugs the ivshmem-doorbell devices and serves them itself."""

    def __init__(self, binary, rundir, size, guests):
        os.environ["BROKERD_BIN"] = binary
        sys.path.insert(0, os.path.join(E2E, "..", "integration"))
        import harness  # noqa: E402 (it reads BROKERD_BIN)
        a, b = guests
        self.pool = "gbench" + str(os.getpid())
        policy = {"agents": [{"uid": 0, "domains": [a.name, b.name]}],
                  "shares": [{"sharer": a.name, "device": "nic0", "peers": [b.name], "access": "rw"}]}
        self.d = harness.Daemon(policy=policy, extra_args=[
            "--backend", "libvirt", "--libvirt-uri", e2e.URI, "--ivshmem-dir", os.path.join(rundir, "ivshmem")])
        platform = {
            "memory": [{"name": "bank0", "base": 0, "size": "4GiB", "numa_node": 0}],
            "pools": [{"name": self.pool, "base": "1GiB", "size": str(2 * size), "numa_node": 0,
                       "granule": "4KiB", "backing": {"kind": "shm", "path": e2e.SHM_DIR}}],
            "devices": [{"name": "nic0", "owner": a.name, "dma_mask_bits": 64}],
        }
        with open(self.d.platform_path, "w") as f:
            json.dump(platform, f)
        self.d.start()
        try:
            owner, peer = self.d.agent(), self.d.agent()
            r = owner.call("region.share", {"owner": a.name, "device": "nic0", "size": size, "doorbells": 2,
                                            "peers": [{"domain": b.name, "access": "rw"}]})
            peer.call("region.attach", {"domain": b.name, "token": r["tokens"][0]["token"]})
            version = owner.call("broker.info")["version"]
        except BaseException:
            self.stop()
            raise
        self.describe = (f"brokerd {version} --backend libvirt: {a.name} shares region {r['region']} of {size} bytes "
                         f"(pool {self.pool}, /dev/shm) with {b.name}, who attaches; doorbells 2")

    def stop(self):
        rc = self.d.stop()
        if rc != 0:
            print(self.d.read_log()[-3000:], file=sys.stderr)
        self.d.cleanup()
        for f in os.listdir(e2e.SHM_DIR):
            if f.startswith(f"brokerd-{self.pool}-"):
                os.unlink(os.path.join(e2e.SHM_DIR, f))


def parse_cases(out):
    """guestbench's CASE lines: {key: {field: int}}."""
    cases = {}
    for line in out.splitlines():
        if line.startswith("CASE "):
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            key = fields.pop("key")
            cases[key] = {k: (v if k == "side" else float(v)) for k, v in fields.items()}
    return cases


class Stalled(Exception):
    pass


class Tally:
    """What the runs of one transport under one vCPU configuration took: completed runs, their
    time, timed round trips, doorbell interrupts (the sleeps that were woken, both guests; the
    probes' own not counted), wake-ups lost (a probe let the run go on) and runs stopped."""

    def __init__(self):
        self.runs = self.round_trips = self.irqs = self.lost = self.stopped = 0
        self.seconds = 0.0


def sleeper_states(g):
    """The scheduler state of each guestbench process in g (S: asleep), as ps would say it."""
    return g.check("for p in $(pidof guestbench); do cut -d' ' -f3 /proc/$p/stat; done; true").split()


def run_transport(a, b, ids, transport, opts, tally, tag):
    """Both sides of one transport, in the background in their guests; returns (A's cases, B's
    cases) and adds to tally (a Tally) what the run cost in doorbell interrupts and wake-ups.
    Progress is a case ending or, for the channel, a doorbell interrupt in either guest. When
    there is none for --stall-timeout seconds and neither side is running (both asleep), each
    guest rings the other once: a run that then goes on had lost a wake-up (counted; the next
    stall is probed again). A run that does not go on within RING_GRACE seconds, a TCP run
    without progress for --stall-timeout seconds, and a run with a side running but no case
    ended for CASE_LIMIT seconds raise Stalled (both sides stopped, the cases so far in .cases)."""
    common = f"--cases {','.join(opts.cases)} --divide {opts.divide}"
    if transport == "tcp":
        order = ((b, f"guestbench b tcp {common}"), (a, f"guestbench a tcp --peer-ip {b.ip} {common}"))
    else:
        order = ((a, f"guestbench a {transport} --peer {ids[b.name]} {common}"),
                 (b, f"guestbench b {transport} --peer {ids[a.name]} {common}"))
    irqs0 = sum(e2e.doorbell_interrupts(g) for g in (a, b))
    t0 = time.monotonic()
    for i, (g, cmd) in enumerate(order):
        g.check(f"({cmd}; echo EXIT $?) >/tmp/bench.log 2>&1 &")
        if i == 0:  # the side that must be there first
            e2e.wait_for(f"{g.name}'s {transport} side to be ready",
                         lambda: re.search(r"^(READY|EXIT)", g.check("cat /tmp/bench.log"), re.M), 60)
    # Every 5 s a `cat` in each guest, more often for a short --stall-timeout: a small
    # disturbance, the same for every transport.
    interval = min(5.0, opts.stall_timeout / 3)
    start = time.monotonic()
    outs, last, progress, case_progress, rung, probes = {}, None, start, start, None, 0

    def stop(why):
        for g in (a, b):
            g.check("kill $(pidof guestbench) 2>/dev/null; true")
        tally.stopped += 1
        e = Stalled(f"{LABELS[transport]}: {why}; stopped (its rows stop where it stopped). Output: {outs}")
        e.cases = (parse_cases(outs[a.name]), parse_cases(outs[b.name]))
        raise e

    while True:
        outs = {g.name: g.check("cat /tmp/bench.log") for g in (a, b)}
        done = all("EXIT" in o for o in outs.values())
        lines = (outs[a.name].count("\n"), outs[b.name].count("\n"))
        irqs = sum(e2e.doorbell_interrupts(g) for g in (a, b))
        now = time.monotonic()
        if last is None or lines != last[0]:
            case_progress = now
        # After a probe, its own interrupts (at most 2 in each guest) are not progress.
        if done or last is None or lines != last[0] or irqs > (last[1] if rung is None else rung[1] + 4):
            if rung is not None:
                tally.lost += 1
                log(f"{tag}: {LABELS[transport]}: went on after the ring: a lost wake-up")
            last, progress, rung = (lines, irqs), now, None
            if done:
                break
        elif rung is not None:
            if now - rung[0] > RING_GRACE:
                stop(f"no progress for {opts.stall_timeout}s nor {RING_GRACE}s after a ring each way")
        elif now - progress > opts.stall_timeout:
            if transport == "tcp":
                stop(f"no case ended for {opts.stall_timeout}s")
            states = {g.name: sleeper_states(g) for g in (a, b)}
            if not any("R" in st for st in states.values()):
                # Both asleep (or a side gone): a lost wake-up, or sides waiting for each other's
                # data? Each guest rings the other once.
                for g, peer in ((a, b), (b, a)):
                    g.check(f"guestbench ring --peer {ids[peer.name]}")
                rung, probes = (now, irqs), probes + 1
                log(f"{tag}: {LABELS[transport]}: no progress for {opts.stall_timeout}s, guestbench states "
                    f"{states}, doorbell interrupts {irqs - irqs0}; each guest rang the other")
            elif now - case_progress > CASE_LIMIT:
                stop(f"a side running but no case ended for {CASE_LIMIT}s")
            # else a side spins or busy-polls: no interrupts to expect, it is not asleep
        time.sleep(interval)
    tally.seconds += time.monotonic() - t0
    tally.irqs += sum(e2e.doorbell_interrupts(g) for g in (a, b)) - irqs0 - 4 * probes
    for g, cmd in order:
        if "EXIT 0" not in outs[g.name]:
            raise AssertionError(f"{g.name}: {cmd}: {outs[g.name]}")
    cases = parse_cases(outs[a.name]), parse_cases(outs[b.name])
    tally.runs += 1
    tally.round_trips += sum(int(c["n"]) for k, c in cases[0].items() if k.startswith("pp-"))
    return cases


def fmt_ratio(x, ref):
    return f"{x / ref:8.3f} x" if ref else "       ?"


def report(rounds, opts):
    """A table per case: a row per transport and round (rounds: (tag, {transport: cases})), the
    channel against its round's TCP."""
    for key in opts.cases:
        size = next((int(r[t][0][key]["size"]) for _, r in rounds for t in r if key in r[t][0]), None)
        if size is None:
            continue
        label = f"{size} B" if size < 1024 else f"{size >> 10} KiB" if size < 1 << 20 else f"{size >> 20} MiB"
        if key.startswith("pp-"):
            print(f"\n== ping-pong round trip, {label} each way (us; CPU: both guests, per round trip) ==")
            print(f"{'transport':<40}{'n':>6}{'p50':>10}{'p99':>10}{'mean':>10}{'max':>10}{'CPU':>9}"
                  f"{'p50 / TCP':>12}{'CPU / TCP':>12}")
        else:
            print(f"\n== stream of {label} messages, A to B (CPU: both guests; busy: a guest's CPU over the wall time) ==")
            print(f"{'transport':<40}{'n':>7}{'MB/s':>9}{'msg/s':>9}{'CPU s/GB':>10}{'busyA%':>7}{'busyB%':>7}"
                  f"{'MB/s / TCP':>12}{'CPU / TCP':>12}")
        for tag, r in rounds:
            tcp = r.get("tcp", ({}, {}))
            for t in opts.transports:
                if t not in r or key not in r[t][0] or key not in r[t][1]:
                    continue
                ca, cb = r[t][0][key], r[t][1][key]
                n = int(ca["n"])
                cpu = (ca["cpu_ns"] + cb["cpu_ns"]) / 1e9
                name = f"{LABELS[t]} {tag}"
                ta, tb = tcp[0].get(key), tcp[1].get(key)
                tcpu = (ta["cpu_ns"] + tb["cpu_ns"]) / 1e9 if ta and tb else 0
                if key.startswith("pp-"):
                    print(f"{name:<40}{n:>6}{ca['p50_ns'] / 1e3:>10.1f}{ca['p99_ns'] / 1e3:>10.1f}"
                          f"{ca['mean_ns'] / 1e3:>10.1f}{ca['max_ns'] / 1e3:>10.1f}{cpu / n * 1e6:>9.1f}"
                          + ("" if t == "tcp" else
                             f"{fmt_ratio(ca['p50_ns'], ta and ta['p50_ns']):>12}{fmt_ratio(cpu, tcpu):>12}"))
                else:
                    secs = ca["elapsed_ns"] / 1e9
                    gb = n * size / 1e9
                    mbs = gb * 1e3 / secs
                    tmbs = ta["n"] * size / 1e6 / (ta["elapsed_ns"] / 1e9) if ta else 0
                    print(f"{name:<40}{n:>7}{mbs:>9.1f}{n / secs:>9.0f}{cpu / gb:>10.2f}"
                          f"{ca['cpu_ns'] / ca['elapsed_ns'] * 100:>7.0f}{cb['cpu_ns'] / ca['elapsed_ns'] * 100:>7.0f}"
                          + ("" if t == "tcp" else
                             f"{fmt_ratio(mbs, tmbs):>12}{fmt_ratio(cpu / gb, tcpu / (ta['n'] * size / 1e9) if ta else 0):>12}"))


def parse_vcpus(spec):
    """"N" (N vCPUs) or "N/M" (N online of a maximum of M): (N, M); ValueError otherwise."""
    online, _, maximum = spec.partition("/")
    online, maximum = int(online), int(maximum or online)
    if not 1 <= online <= maximum:
        raise ValueError(spec)
    return online, maximum


def domain_vcpus():
    """tests/e2e/domain.xml's <vcpu> as (online, maximum)."""
    with open(os.path.join(E2E, "domain.xml")) as f:
        m = re.search(r"<vcpu(?: current='(\d+)')?>(\d+)</vcpu>", f.read())
    return int(m.group(1) or m.group(2)), int(m.group(2))


def vcpus_tag(vcpus):
    """Short: "v1" (1 vCPU) or "v1/2" (1 online of a maximum of 2)."""
    return f"v{vcpus[0]}" + (f"/{vcpus[1]}" if vcpus[1] > vcpus[0] else "")


def vcpus_label(vcpus):
    online, maximum = vcpus
    return f"{online} vCPU{'s' if online > 1 else ''}" + (f" online of a maximum of {maximum}" if maximum > online else "")


class Pair:
    """Guests A and B booted with one vCPU configuration (their own run dir under rundir), the
    doorbell region served, each one's doorbell id known and the network between them checked.
    stop() destroys what it made, whatever happened."""

    def __init__(self, opts, rundir, vcpus):
        rundir = tempfile.mkdtemp(prefix="pair-", dir=rundir)
        os.chmod(rundir, 0o755)
        ports = (opts.udp_port, opts.udp_port + 1)
        self.vcpus = vcpus
        self.a = a = BenchGuest(opts.prefix + "-a", rundir, 0, ports, opts.domain_type, vcpus)
        self.b = b = BenchGuest(opts.prefix + "-b", rundir, 1, ports[::-1], opts.domain_type, vcpus)
        self.server, self.started = None, []
        try:
            for g in (a, b):
                g.start()
                self.started.append(g)
            if opts.cpus:
                for g, cpu in zip((a, b), opts.cpus):
                    g.pin(cpu)
            for g in (a, b):
                g.wait_ready()
            log(f"both guests at their command loop ({vcpus_label(vcpus)})")
            if opts.brokerd:
                self.server = BrokerdServer(opts.brokerd, rundir, opts.region_size, (a, b))
            else:
                self.server = HarnessServer(opts.harness, rundir, opts.region_size, (a, b))
            self.ids = {}
            for g in (a, b):
                e2e.wait_for(f"{g.name}'s doorbell device",
                             lambda: g.run("test -e /dev/ivshmem-doorbell0")[0] == 0, 60)
                self.ids[g.name] = int(re.search(r"ID (\d+)", g.check("chantool info")).group(1))
            b.check(f"ping -c 1 -W 10 {a.ip} >/dev/null")
            log(f"doorbell ids {self.ids}; {a.ip} and {b.ip} reach each other")
        except BaseException:
            self.stop()
            raise

    def describe(self, opts):
        a, b = self.a, self.b
        print(f"guests: {a.name} (A: sends pings and streams) {a.ip}, {b.name} (B: answers, receives) {b.ip}; "
              f"domain type '{opts.domain_type}', machine pc, {vcpus_label(self.vcpus)}, 256 MiB each")
        print("QEMU threads: " + (f"{a.name} on CPU {opts.cpus[0]}, {b.name} on CPU {opts.cpus[1]} (taskset -a)"
                                  if opts.cpus else "not pinned"))
        print(f"network: virtio-net over a libvirt <interface type='udp'> pair "
              f"(127.0.0.1:{opts.udp_port} <-> {opts.udp_port + 1})")
        print(f"doorbell region: {self.server.describe}")

    def stop(self):
        if self.server:
            self.server.stop()
            self.server = None
        for g in self.started:
            g.stop()
            g.remove_log()
        self.started = []


def report_wakeups(tallies, opts):
    """Per vCPU configuration and channel transport: the sleeps woken and the wake-ups lost."""
    print(f"\n== doorbell wake-ups of the channel runs (sleeps: doorbell interrupts taken by both guests; lost: "
          f"no progress for {opts.stall_timeout}s, then a ring each way let the run go on) ==")
    print(f"{'vCPUs':<36}{'transport':<34}{'runs':>5}{'round trips':>12}{'sleeps':>10}{'lost':>6}"
          f"{'per 10^4':>9}{'stopped':>8}{'run s':>8}")
    for (vcpus, t), c in tallies.items():
        if t == "tcp":
            continue
        rate = f"{c.lost / c.irqs * 1e4:9.2f}" if c.irqs else f"{'-':>9}"
        print(f"{vcpus_label(vcpus):<36}{LABELS[t]:<34}{c.runs:>5}{c.round_trips:>12}{c.irqs:>10}{c.lost:>6}"
              f"{rate}{c.stopped:>8}{c.seconds:>8.0f}")


def run(opts, rundir):
    """Rounds; in each, every vCPU configuration in turn (a fresh pair of guests when it changes),
    and in each configuration every transport in turn."""
    pair, start = None, time.monotonic()
    rounds, stalls, tallies = [], [], {}
    try:
        for i in range(opts.rounds):
            for vcpus in opts.vcpus:
                r = {}
                rounds.append((f"#{i + 1}" + (f" {vcpus_tag(vcpus)}" if len(opts.vcpus) > 1 else ""), r))
                if pair is None or pair.vcpus != vcpus:
                    if pair:
                        pair.stop()
                        pair = None
                    t0 = time.monotonic()
                    pair = Pair(opts, rundir, vcpus)
                    log(f"guests up in {time.monotonic() - t0:.0f}s")
                    if i == 0:
                        pair.describe(opts)
                        print(f"cases: {' '.join(opts.cases)}, counts of data-plane-bench divided by {opts.divide}")
                        sys.stdout.flush()
                for t in opts.transports:
                    tag = f"round {i + 1}" + (f", {vcpus_label(vcpus)}" if len(opts.vcpus) > 1 else "")
                    log(f"{tag}: {LABELS[t]}...")
                    t0 = time.monotonic()
                    try:
                        r[t] = run_transport(pair.a, pair.b, pair.ids, t, opts,
                                               tallies.setdefault((vcpus, t), Tally()), tag)
                    except Stalled as e:
                        r[t] = e.cases
                        stalls.append(f"{tag}: {e}")
                        log(f"{tag}: STALLED: {e}")
                    log(f"{tag}: {LABELS[t]}: {time.monotonic() - t0:.0f}s")
        report(rounds, opts)
        report_wakeups(tallies, opts)
        for line in stalls:
            print(f"\nSTALLED: {line}")
        print(f"\nwall time: {time.monotonic() - start:.0f}s")
    finally:
        if pair:
            pair.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--brokerd", help="brokerd's binary: it serves the doorbell region (libvirt backend)")
    p.add_argument("--harness", help="tests/e2e/ivshmem-server-harness: it serves the region instead of brokerd")
    p.add_argument("--prefix", default="gb-bench", help="the domains' names: PREFIX-a, PREFIX-b")
    p.add_argument("--kvm", dest="domain_type", action="store_const", const="kvm", default="qemu",
                   help="<domain type='kvm'> instead of 'qemu' (TCG)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--divide", type=int, default=10, help="data-plane-bench's counts divided by this")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--transports", default=",".join(TRANSPORTS))
    p.add_argument("--region-size", type=int, default=32 << 20)
    p.add_argument("--stall-timeout", type=float, default=180,
                   help="seconds without progress (a case ending; for the channel, a doorbell interrupt too) after "
                        "which a channel run is probed by a ring each way, and stopped if that does not help")
    p.add_argument("--vcpus", help="LIST of vCPU configurations, N or N/M (N online of a maximum of M); each "
                                   "round boots a pair for each in turn (default: tests/e2e/domain.xml's)")
    p.add_argument("--udp-port", type=int, default=45110)
    p.add_argument("--cpus", default="0,1", help="A,B: host CPUs of each guest's QEMU, or 'none'")
    opts = p.parse_args()
    if bool(opts.brokerd) == bool(opts.harness):
        p.error("one of --brokerd and --harness")
    opts.cases = opts.cases.split(",")
    opts.transports = opts.transports.split(",")
    if not set(opts.cases) <= set(CASES) or not set(opts.transports) <= set(TRANSPORTS):
        p.error(f"cases are some of {CASES}, transports some of {TRANSPORTS}")
    opts.cpus = None if opts.cpus == "none" else [int(c) for c in opts.cpus.split(",")]
    try:
        opts.vcpus = [parse_vcpus(v) for v in opts.vcpus.split(",")] if opts.vcpus else [domain_vcpus()]
    except ValueError as e:
        p.error(f"--vcpus: {e}: N or N/M, 1 <= N <= M")
    if opts.stall_timeout <= 0:
        p.error("--stall-timeout: seconds, more than 0")
    # A SIGTERM or hangup unwinds through the finally clauses: the domains and daemons are stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    daemons = e2e.started_daemons()
    rundir = tempfile.mkdtemp(prefix=opts.prefix + "-", dir="/var/tmp")
    os.chmod(rundir, 0o755)  # libvirt-qemu reaches the FIFOs, the console files and the socket
    try:
        run(opts, rundir)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
        for name in ("libvirtd", "virtlogd"):
            if name in daemons:
                e2e.stop_proc(daemons[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
