# SPDX-License-Identifier: MIT
"""nbd-stall: an NBD client that asks for data and never reads it, for the
test of --send-timeout (test-stall.sh).

    nbd-stall.py ADDR N LEN READY   a connection with a small receive buffer
                                    that finishes the handshake, sends N
                                    READs of LEN bytes at offset 0 and never
                                    reads a reply; touches READY once they
                                    are sent, then sleeps until killed
    nbd-stall.py tls ADDR N LEN READY
                                    the same inside TLS (NBD_OPT_STARTTLS;
                                    the server's certificate is not checked)
    nbd-stall.py idle ADDR SECS     finish the handshake and send nothing:
                                    exit 0 if the server closed the
                                    connection within SECS seconds, 2 if it
                                    did not

ADDR is a Unix socket's path (it starts with '/') or HOST:PORT.  SECS is a
generous bound for a timeout much shorter than it, not a timing.
"""

import socket
import ssl
import struct
import sys
import time

NBD_MAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_EXPORT_NAME = 1
OPT_STARTTLS = 5
REPLY_MAGIC = 0x3E889045565A9
REP_ACK = 1
FLAG_C_FIXED_NEWSTYLE = 1
FLAG_C_NO_ZEROES = 2
REQUEST_MAGIC = 0x25609513
CMD_READ = 0


def die(msg):
    print("nbd-stall: " + msg, file=sys.stderr)
    sys.exit(1)


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            die("the server closed the connection during the handshake")
        b += chunk
    return b


def connect(addr, rcvbuf=None, tls=False):
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = addr
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    if rcvbuf:
        # Before connect(), so that TCP's window starts small too.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(60)
    s.connect(target)
    magic, opt, _ = struct.unpack(">QQH", recv_exact(s, 18))
    if magic != NBD_MAGIC or opt != IHAVEOPT:
        die("not a newstyle greeting")
    s.sendall(struct.pack(">I", FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES))
    if tls:
        s.sendall(struct.pack(">QII", IHAVEOPT, OPT_STARTTLS, 0))
        magic, opt, rtype, rlen = struct.unpack(">QIII", recv_exact(s, 20))
        if magic != REPLY_MAGIC or opt != OPT_STARTTLS or rtype != REP_ACK or rlen:
            die("NBD_OPT_STARTTLS was refused")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 0))
    recv_exact(s, 10)
    return s


def cmd_stall(addr, n, length, ready, tls=False):
    s = connect(addr, rcvbuf=4096, tls=tls)
    for i in range(int(n)):
        s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, i + 1, 0, int(length)))
    with open(ready, "w") as f:
        f.write("sent\n")
    while True:
        time.sleep(60)


def cmd_idle(addr, secs):
    s = connect(addr)
    s.settimeout(float(secs))
    try:
        b = s.recv(1)
    except socket.timeout:
        return 2
    except ConnectionResetError:
        return 0
    if b:
        die("the server sent data to a client that asked for nothing")
    return 0


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "idle":
        sys.exit(cmd_idle(args[1], args[2]))
    if len(args) == 5 and args[0] == "tls":
        cmd_stall(*args[1:], tls=True)
        return
    if len(args) == 4:
        cmd_stall(*args)
        return
    die("usage: nbd-stall.py [tls] ADDR N LEN READY | idle ADDR SECS")


main()
