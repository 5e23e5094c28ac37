# SPDX-License-Identifier: MIT
"""A plain-text NBD client that says what libnbd would not, for test-tls.sh.

  nbd-opt.py ADDRESS reqd      every option but STARTTLS and ABORT gets
                               NBD_REP_ERR_TLS_REQD, ABORT its ACK
  nbd-opt.py ADDRESS exportname   NBD_OPT_EXPORT_NAME in plain text: closed
  nbd-opt.py ADDRESS stall SECONDS   STARTTLS acked, then silence: closed
                               within SECONDS (the handshake deadline)
  nbd-opt.py ADDRESS inject    STARTTLS with bytes after it: closed, no ACK

ADDRESS is HOST:PORT or a Unix socket's path.  Exits 0 when the server did
what is said, 1 with a message otherwise.
"""
import socket
import struct
import sys

MAGIC, IHAVEOPT, REPLY_MAGIC = 0x4E42444D41474943, 0x49484156454F5054, 0x3E889045565A9
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED_REPLY = 8
REP_ACK, REP_ERR_TLS_REQD = 1, (1 << 31) | 5


def connect(addr):
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(addr)
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    s.settimeout(30)
    return s


def recv_all(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("server closed the connection")
        b += c
    return b


def greet(s):
    magic, opt, flags = struct.unpack(">QQH", recv_all(s, 18))
    if magic != MAGIC or opt != IHAVEOPT:
        sys.exit("not fixed newstyle")
    s.sendall(struct.pack(">I", 1))     # NBD_FLAG_C_FIXED_NEWSTYLE


def option(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def reply(s):
    magic, opt, rtype, n = struct.unpack(">QIII", recv_all(s, 20))
    if magic != REPLY_MAGIC:
        sys.exit("bad reply magic")
    recv_all(s, n)
    return opt, rtype


def closed(s):
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return False


def main():
    addr, what = sys.argv[1], sys.argv[2]
    s = connect(addr)
    greet(s)
    if what == "reqd":
        go = struct.pack(">I", 0) + struct.pack(">H", 0)
        for opt, data in ((OPT_LIST, b""), (OPT_STRUCTURED_REPLY, b""), (OPT_INFO, go),
                          (OPT_GO, go)):
            option(s, opt, data)
            r = reply(s)
            if r != (opt, REP_ERR_TLS_REQD):
                sys.exit(f"option {opt}: reply {r[1]:#x}, not NBD_REP_ERR_TLS_REQD")
        option(s, OPT_ABORT)
        if reply(s) != (OPT_ABORT, REP_ACK):
            sys.exit("NBD_OPT_ABORT was not acked")
    elif what == "exportname":
        option(s, OPT_EXPORT_NAME)
        if not closed(s):
            sys.exit("NBD_OPT_EXPORT_NAME in plain text was answered")
    elif what == "stall":
        option(s, OPT_STARTTLS)
        if reply(s) != (OPT_STARTTLS, REP_ACK):
            sys.exit("NBD_OPT_STARTTLS was not acked")
        s.settimeout(float(sys.argv[3]))
        if not closed(s):
            sys.exit("a client silent after NBD_OPT_STARTTLS was not disconnected")
    elif what == "inject":
        s.sendall(struct.pack(">QII", IHAVEOPT, OPT_STARTTLS, 0) +
                  struct.pack(">QII", IHAVEOPT, OPT_GO, 0))
        if not closed(s):
            sys.exit("plain text after NBD_OPT_STARTTLS was not refused")
    else:
        sys.exit(f"unknown test {what}")


main()
