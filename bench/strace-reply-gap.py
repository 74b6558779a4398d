#!/usr/bin/env python3
"""From an `strace -f -tt -s 200 -e trace=read,sendmsg,fdatasync -o LOG -p <brokerd pid>` of
brokerd while `bench/run-mapping-bench.sh` runs against it: for each region.share and
region.attach, the time from the last read of brokerd's main thread on another fd (libvirtd's
reply to the hot-plug) to brokerd's reply to the agent, and which thread flushed the WAL in
between ("main": after the plug; "thread": during it, docs/store.md "Group sync").

    bench/strace-reply-gap.py LOG [LOG ...]

Prints one line a request and the median a method. A figure under strace (which slows every
system call), for comparing two builds traced alike; asserts nothing.
"""
import re
import statistics
import sys

REQUEST = re.compile(r'(\d+) (\S+) read\((\d+), "\{\\"jsonrpc\\":\\"2.0\\",\\"id\\":(\d+),'
                     r'\\"method\\":\\"region.(attach|share)\\"')
CALL = re.compile(r'(\d+) (\S+) (\w+)\((\d+)?')


def seconds(stamp):
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def gaps(lines):
    for i, line in enumerate(lines):
        m = REQUEST.match(line)
        if not m:
            continue
        pid, t0, fd, rid, method = m.groups()
        last_other, syncs = None, []
        for later in lines[i + 1:]:
            c = CALL.match(later)
            if not c:
                continue
            who, t, call, f = c.groups()
            if call == "read" and who == pid and f != fd:
                last_other = seconds(t)
            elif call == "fdatasync":
                syncs.append("main" if who == pid else "thread")
            elif call == "sendmsg" and f == fd and re.search(r'\\"id\\":%s[,}]' % rid, later):
                if last_other is not None:
                    yield method, (seconds(t) - last_other) * 1e3, syncs
                break


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        with open(path) as f:
            found = list(gaps(f.read().splitlines()))
        print(path)
        for method, ms, syncs in found:
            print(f"  {method:6} libvirtd's reply -> brokerd's reply {ms:7.3f} ms  flushed by: {','.join(syncs) or '-'}")
        for method in ("share", "attach"):
            ms = [g for m, g, _ in found if m == method]
            if ms:
                print(f"  median {method}: {statistics.median(ms):.3f} ms over {len(ms)}")


if __name__ == "__main__":
    main()
