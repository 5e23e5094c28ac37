#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed inputs of fuzz-nbd (see fuzz-nbd.c for the format: one
setup byte, then a client's byte stream) into corpus/nbd/.  The seeds walk
the fuzzer to each part of the protocol: handshakes that reach
transmission, every command, and the ways a client goes wrong.  Run it
again after changing it; inputs the fuzzer found are kept beside these."""

import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
OPT = dict(EXPORT_NAME=1, ABORT=2, LIST=3, STARTTLS=5, INFO=6, GO=7, STRUCTURED_REPLY=8,
           LIST_META_CONTEXT=9, SET_META_CONTEXT=10)
CMD = dict(READ=0, WRITE=1, DISC=2, FLUSH=3, TRIM=4, CACHE=5, WRITE_ZEROES=6, BLOCK_STATUS=7)
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16


def opt(code, data=b""):
    return struct.pack(">QII", IHAVEOPT, code, len(data)) + data


def go(name=b"", infos=(0, 1, 2, 3), code=OPT["GO"]):
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos))
    data += b"".join(struct.pack(">H", i) for i in infos)
    return opt(code, data)


def meta(code, queries, name=b""):
    data = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
    data += b"".join(struct.pack(">I", len(q)) + q for q in queries)
    return opt(code, data)


def req(cmd, off=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, CMD[cmd], cookie, off, length) + payload


def full_handshake():
    return (struct.pack(">I", 3) + opt(OPT["STRUCTURED_REPLY"]) +
            meta(OPT["SET_META_CONTEXT"], [b"base:allocation"]) + go())


def seeds():
    page = bytes(range(256)) * 16
    yield "go-commands", 0, full_handshake() + (
        req("WRITE", 0, 4096, FUA, 1, page) + req("READ", 0, 8192, 0, 2) +
        req("READ", 4000, 200, DF, 3) + req("BLOCK_STATUS", 0, 1 << 20, 0, 4) +
        req("BLOCK_STATUS", 0, 65536, REQ_ONE, 5) + req("TRIM", 0, 4096, 0, 6) +
        req("WRITE_ZEROES", 8192, 4096, NO_HOLE | FAST_ZERO, 7) + req("FLUSH", 0, 0, 0, 8) +
        req("CACHE", 0, 4096, 0, 9) + req("READ", 0, 16384, 0, 10) + req("DISC"))
    # The same, served a few bytes per recv().
    yield "go-commands-split", 7 << 1, full_handshake() + (
        req("WRITE", 100, 5000, 0, 1, page + page[:904]) + req("READ", 0, 8192, 0, 2) +
        req("DISC"))
    # TLS (setup bits 6-7), pretended: the handshake takes one byte, non-zero
    # for success.  4 bytes per recv() keep rx empty after STARTTLS.
    starttls = opt(OPT["STARTTLS"])
    yield "starttls-require", (2 << 6) | (4 << 1), (
        struct.pack(">I", 1) + opt(OPT["LIST"]) + go() + starttls + b"\x01" + starttls +
        full_handshake()[4:] + req("READ", 0, 4096, 0, 1) + req("DISC"))
    yield "starttls-on-refused", (1 << 6) | (4 << 1), (
        struct.pack(">I", 1) + opt(OPT["STRUCTURED_REPLY"]) + starttls + b"\x00")
    yield "starttls-inject", 2 << 6, (
        struct.pack(">I", 1) + starttls + go() + req("DISC"))
    yield "starttls-export-name", 2 << 6, (
        struct.pack(">I", 1) + opt(OPT["EXPORT_NAME"]) + req("DISC"))
    yield "export-name-simple", 0, (
        struct.pack(">I", 1) + opt(OPT["LIST"]) + opt(OPT["STARTTLS"]) + go(code=OPT["INFO"]) +
        opt(99, b"xyz") + opt(OPT["EXPORT_NAME"], b"anything") +
        req("WRITE", 0, 512, 0, 1, page[:512]) + req("READ", 0, 512, 0, 2) +
        req("READ", (1 << 20) - 100, 200, 0, 3) + req("WRITE", 1 << 20, 16, 0, 4, page[:16]) +
        req("TRIM", 0, 0, 0, 5) + req("READ", 0, 4096, DF, 6) + req("BLOCK_STATUS", 0, 4096) +
        struct.pack(">IHHQQI", REQ_MAGIC, 0, 42, 7, 0, 0) + req("DISC"))
    yield "read-only", 1, full_handshake() + (
        req("WRITE", 0, 4096, 0, 1, page) + req("TRIM", 0, 4096, 0, 2) +
        req("WRITE_ZEROES", 0, 4096, 0, 3) + req("READ", 0, 4096, 0, 4) + req("DISC"))
    big = bytes(range(251)) * (300 * 1024 // 251)
    yield "large-requests", 0, full_handshake() + (
        req("WRITE", 4096, len(big), 0, 1, big) + req("READ", 0, 512 * 1024, 0, 2) +
        req("WRITE_ZEROES", 0, 1 << 20, 0, 3) + req("DISC"))
    yield "oversized-write", 0, full_handshake() + req("WRITE", 0, 64 << 20, 0, 1, page)
    yield "oversized-read", 0, full_handshake() + (
        req("READ", 0, 64 << 20, 0, 1) + req("READ", 0, 64 << 20, DF, 2) + req("DISC"))
    yield "meta-queries", 0, (
        struct.pack(">I", 3) + meta(OPT["SET_META_CONTEXT"], [b"base:allocation"]) +
        meta(OPT["LIST_META_CONTEXT"], []) + meta(OPT["LIST_META_CONTEXT"], [b"base:", b"x:y"]) +
        opt(OPT["STRUCTURED_REPLY"]) +
        meta(OPT["SET_META_CONTEXT"], [b"qemu:dirty-bitmap:x", b"base:allocation"]) +
        opt(OPT["SET_META_CONTEXT"], struct.pack(">I", 0) + struct.pack(">I", 5) + b"\0\0\0\x40") +
        opt(OPT["GO"], b"\0\0\0\x10") + opt(OPT["ABORT"]))
    yield "bad-client-flags", 0, struct.pack(">I", 0x80000001) + go()
    yield "no-fixed-newstyle", 0, struct.pack(">I", 0) + go()
    yield "bad-option-magic", 0, struct.pack(">I", 3) + b"IHAVEOPX" + b"\0" * 8
    yield "option-too-long", 0, struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 7, 1 << 20)
    yield "bad-request-magic", 0, full_handshake() + b"\x25\x60\x95\x14" + b"\0" * 24
    yield "hangup-mid-request", 0, full_handshake() + req("WRITE", 0, 4096, 0, 1, page[:100])
    yield "many-options", 0, struct.pack(">I", 3) + opt(OPT["LIST"]) * 200


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "corpus", "nbd")
    os.makedirs(out, exist_ok=True)
    for name, setup, stream in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([setup]) + stream)


if __name__ == "__main__":
    main()
