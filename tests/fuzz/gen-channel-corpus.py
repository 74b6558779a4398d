#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seeds of tests/fuzz/corpus/channel/ (fuzz-channel.c describes the input format).

The channel images are built here from docs/channel.md alone, a second implementation of the
layout: valid channels with messages (copied and in place, wrapping with padding, a closed
creator), our side creating with a hostile joiner, and every kind of corruption the joiner
must refuse. Run it from anywhere; it rewrites the directory's seed-* files.
"""
import os
import struct

MAGIC = 0x4E4148434B44524B
HDR, CTL, REC = 128, 128, 8
MSG, PAD = 1, 2
OP_WRITE, OP_WRITE64, OP_RECV, OP_PEEK, OP_CONSUME, OP_SEND, OP_RESERVE, OP_COMMIT, OP_PEER_GONE, OP_MODE, OP_RING = range(11)


def size(ring):
    return HDR + 2 * (CTL + ring)


def header(ring, max_message=None, version=1, header_size=HDR, off0=HDR, off1=None, magic=MAGIC, closed=(0, 0)):
    max_message = ring // 2 - REC if max_message is None else max_message
    off1 = HDR + CTL + ring if off1 is None else off1
    line0 = struct.pack('<QIIQII QQ', magic, version, header_size, ring, max_message, 0, off0, off1).ljust(64, b'\0')
    return line0 + struct.pack('<II', *closed).ljust(64, b'\0')


class Producer:
    """The creator's side of ring 0 (or the joiner's of ring 1): records and writes to memory."""

    def __init__(self, ring, ctl_off):
        self.ring, self.ctl, self.pos, self.writes = ring, ctl_off, 0, []

    def put(self, payload, kind=MSG, length=None):
        need = REC + (len(payload) + 7) // 8 * 8
        off = self.pos % self.ring
        if need > self.ring - off:
            tail = self.ring - off
            self.writes.append((self.ctl + CTL + off, struct.pack('<II', tail - REC, PAD)))
            self.pos += tail
            off = 0
        rec = struct.pack('<II', len(payload) if length is None else length, kind) + payload
        self.writes.append((self.ctl + CTL + off, rec))
        self.pos += need

    def image(self, base):
        """base with every write applied and the producer index published."""
        mem = bytearray(base)
        for off, data in self.writes:
            end = off + len(data)
            if len(mem) < end:
                mem.extend(b'\0' * (end - len(mem)))
            mem[off:end] = data
        self.writes = []
        return mem

    def script(self):
        """The same writes as operations, then the index."""
        out = b''
        for off, data in self.writes:
            for i in range(0, len(data), 255):
                chunk = data[i:i + 255]
                out += struct.pack('<BHB', OP_WRITE, off + i, len(chunk)) + chunk
        self.writes = []
        return out + write64(self.ctl, self.pos)


def write64(off, value):
    return struct.pack('<BHQ', OP_WRITE64, off, value)


def recv(cap=65535):
    return struct.pack('<BH', OP_RECV, cap)


def send(n):
    return struct.pack('<BH', OP_SEND, n)


def reserve(n):
    return struct.pack('<BH', OP_RESERVE, n)


def commit(n):
    return struct.pack('<BH', OP_COMMIT, n)


PEEK, CONSUME, GONE, RING = bytes([OP_PEEK]), bytes([OP_CONSUME]), bytes([OP_PEER_GONE]), bytes([OP_RING])


def mode(blocking):
    return bytes([OP_MODE, 1 if blocking else 0])


def join_input(image, ops, flags=0, length=None, ring=4096):
    length = size(ring) if length is None else length
    image = bytes(image)
    return struct.pack('<BHH', flags, length, len(image)) + image + ops


def create_input(ops, flags=1, length=None, ring=4096):
    length = size(ring) if length is None else length
    return struct.pack('<BHH', flags, length, 0) + ops


def msg(n, seed=0):
    return bytes((seed + i) % 251 for i in range(n))


def joined(ring=4096, messages=(), **hdr):
    """A created channel with messages in ring 0: (producer, image)."""
    p = Producer(ring, HDR)
    for m in messages:
        p.put(m)
    base = bytearray(header(ring, **hdr) + b'\0' * CTL)
    base[HDR:HDR + 8] = struct.pack('<Q', p.pos)
    return p, p.image(base)


def seeds():
    R = 4096
    ring1 = HDR + CTL + R  # ring 1's control block (the joiner produces there)
    out = {}

    p, img = joined(messages=[b'ping'])
    out['join-empty-then-send'] = join_input(joined()[1], recv() + PEEK + send(14) + send(1) + recv())
    out['join-recv'] = join_input(img, recv() + recv())
    out['join-blocking-recv'] = join_input(img, recv() + recv() + RING + recv(), flags=2)
    p, img = joined(messages=[msg(14), msg(100, 1), msg(2040, 2)])
    out['join-peek-consume'] = join_input(img, PEEK + PEEK + CONSUME + CONSUME + PEEK + CONSUME + recv(10) + recv())
    out['join-emsgsize'] = join_input(img, recv(13) + recv(14) + recv(99) + PEEK + CONSUME)

    # Wrap: three records of 1000 fill 3024 bytes; a 1500-byte one takes padding first.
    p, img = joined(messages=[msg(1000, i) for i in range(3)])
    p.put(msg(1500, 7))
    ops = recv() * 3 + p.script() + recv()
    p.put(msg(200, 8))
    out['join-wrap-padding'] = join_input(img, ops + p.script() + PEEK + CONSUME + recv())
    out['join-wrap-blocking'] = join_input(img, ops + RING + recv(), flags=2)

    # Our sends fill ring 1, the hostile joiner... creator frees it by moving ring 1's consumer index.
    fill = send(2000) * 3 + reserve(500) + commit(400) + send(2000)
    out['join-send-full'] = join_input(joined()[1], fill + write64(ring1 + 64, 4016) + send(2000) + send(2040))
    out['join-send-blocking'] = join_input(joined()[1], fill + write64(ring1 + 64, 2008) + send(1000), flags=2)
    out['join-reserve-commit'] = join_input(joined()[1], reserve(100) + reserve(1) + send(1) + commit(0) + commit(101)
                                            + commit(50) + commit(1) + reserve(2040) + commit(2040))
    out['join-modes'] = join_input(joined()[1], mode(True) + mode(False) + send(8) + recv() + mode(True), flags=2)
    p, img = joined(messages=[b'last words'], closed=(1, 0))
    out['join-closed'] = join_input(img, recv() + recv() + send(4))
    p, img = joined(messages=[b'x'])
    out['join-peer-gone'] = join_input(img, GONE + recv() + send(4) + PEEK + CONSUME + mode(False), flags=2)

    # Hostile producer: indices and records.
    p, img = joined(messages=[msg(30)])
    out['evil-prod-beyond'] = join_input(img, write64(HDR, 8192) + recv() + recv())
    out['evil-prod-unaligned'] = join_input(img, write64(HDR, 36) + recv())
    out['evil-prod-backwards'] = join_input(img, recv() + write64(HDR, 0) + write64(HDR + CTL, 0) + recv())
    out['evil-len-beyond-published'] = join_input(img, write64(HDR + CTL, (100 << 0) | (MSG << 32)) + recv())
    out['evil-len-zero'] = join_input(img, write64(HDR + CTL, MSG << 32) + recv())
    out['evil-len-max'] = join_input(img, write64(HDR + CTL, 0xffffffff | (MSG << 32)) + PEEK)
    out['evil-kind'] = join_input(img, write64(HDR + CTL, 30 | (7 << 32)) + recv())
    out['evil-padding-at-zero'] = join_input(img, write64(HDR + CTL, (R - REC) | (PAD << 32)) + write64(HDR, R) + recv())
    p, img = joined(messages=[msg(1000, i) for i in range(3)])
    p.put(msg(1500, 7))
    script = p.script()
    out['evil-padding-length'] = join_input(img, recv() * 3 + script + write64(HDR + CTL + 3024, 8 | (PAD << 32))
                                            + recv())
    out['evil-len-changes-under-peek'] = join_input(img, PEEK + write64(HDR + CTL, 4000 | (MSG << 32)) + PEEK
                                                    + CONSUME + recv())
    out['evil-cons-ahead'] = join_input(joined()[1], send(100) + write64(ring1 + 64, 1024) + send(100) + send(4000))
    out['evil-cons-unaligned'] = join_input(joined()[1], send(3000) + write64(ring1 + 64, 4) + send(3000))

    # Hostile headers: each field wrong once.
    for name, kw in [('magic', dict(magic=MAGIC ^ 1)), ('version', dict(version=2)), ('header-size', dict(header_size=64)),
                     ('max-message', dict(max_message=R // 2)), ('offsets-overlap', dict(off1=HDR + 64)),
                     ('offset-beyond', dict(off1=size(R))), ('offset-unaligned', dict(off0=HDR + 8))]:
        out['evil-header-' + name] = join_input(joined(**kw)[1], recv())
    img = bytearray(joined()[1])
    img[16:24] = struct.pack('<Q', 3000)
    out['evil-header-ring-size'] = join_input(img, recv())
    out['evil-header-short-len'] = join_input(joined()[1], recv(), length=size(R) - 1)
    out['join-not-ready'] = join_input(b'', recv())

    # Our side creates; the hostile side joins: it produces into ring 1 and consumes ring 0.
    q = Producer(R, ring1)
    for i in range(4):
        q.put(msg(300 * i + 1, i))
    out['create-talk'] = create_input(send(14) + send(1000) + q.script() + recv() + PEEK + CONSUME + recv() + recv()
                                      + write64(HDR + 64, 1024) + send(2000) + send(2000))
    out['create-blocking-8k'] = create_input(send(4000) * 3 + RING + recv() + mode(False) + send(8), flags=1 | 2 | 4,
                                             length=size(8192))
    out['create-max-message'] = create_input(send(64) + send(65) + reserve(64) + commit(64), flags=1 | (1 << 3))
    out['create-joiner-closed'] = create_input(send(8) + write64(64, 1 << 32) + send(8) + recv())
    out['create-evil-cons'] = create_input(send(100) + write64(HDR + 64, 1 << 40) + send(4000) + send(1))
    out['create-too-small'] = create_input(send(1), length=size(R) - 64)
    return out


def main():
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'channel')
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith('seed-'):
            os.unlink(os.path.join(d, f))
    for name, data in seeds().items():
        with open(os.path.join(d, 'seed-' + name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
