# SPDX-License-Identifier: MIT
"""nbd-hold: NBD clients that take a server's connections and do little
with them, for the tests of --max-connections per listener and of the
handshake deadline (test-deadlines.sh).

    nbd-hold.py port                     a free TCP port on 127.0.0.1
    nbd-hold.py hold ADDR N READY        N connections that finish the
                                         handshake (NBD_OPT_EXPORT_NAME)
                                         and then send nothing; touches
                                         READY once all are in transmission;
                                         on SIGUSR1 exits 0 if the server
                                         closed none of them, else 1
    nbd-hold.py refused ADDR             the server closes a connection
                                         before its greeting (cap reached)
    nbd-hold.py closed ADDR HOW WITHIN   a connection that reads the greeting
                                         and then, HOW: "silent" sends
                                         nothing, "trickle" sends an option
                                         a byte every 0.2 s; the server must
                                         close it within WITHIN seconds
    nbd-hold.py idle-read ADDR SECS      finish the handshake, send nothing
                                         for SECS seconds, then read 4 KiB:
                                         a connection in transmission has
                                         no deadline

ADDR is a Unix socket's path (it starts with '/') or HOST:PORT.  Exit 0 when
the server did what is asked, 1 (with a line on stderr) when not.  WITHIN is
a generous bound for a deadline much shorter than it, not a timing.
"""

import signal
import socket
import struct
import sys
import time

NBD_MAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_EXPORT_NAME = 1
FLAG_C_FIXED_NEWSTYLE = 1
FLAG_C_NO_ZEROES = 2
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
CMD_READ = 0
# No wait in these tests should come near it: a server that neither answers
# nor closes is a failure, not a hang.
IO_TIMEOUT = 60


def die(msg):
    print("nbd-hold: " + msg, file=sys.stderr)
    sys.exit(1)


def connect(addr):
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT)
        s.connect(addr)
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=IO_TIMEOUT)
    return s


def recv_exact(s, n):
    """n bytes, or None if the server closed the connection first."""
    b = b""
    while len(b) < n:
        try:
            chunk = s.recv(n - len(b))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        b += chunk
    return b


def greeting(s):
    g = recv_exact(s, 18)
    if g is None:
        die("the server closed the connection before its greeting")
    magic, opt, _ = struct.unpack(">QQH", g)
    if magic != NBD_MAGIC or opt != IHAVEOPT:
        die("not a newstyle greeting: %r" % g)


def handshake(s):
    """Greeting, client flags, NBD_OPT_EXPORT_NAME "": into transmission."""
    greeting(s)
    s.sendall(struct.pack(">I", FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES))
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 0))
    if recv_exact(s, 10) is None:
        die("the server closed the connection during the handshake")


def still_open(s):
    """Whether the server has not closed s (nothing is due to arrive on it)."""
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False


def cmd_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])


def cmd_hold(addr, n, ready):
    checked = []

    def on_usr1(signum, frame):
        closed = sum(1 for s in conns if not still_open(s))
        checked.append(closed)

    signal.signal(signal.SIGUSR1, on_usr1)
    conns = []
    for i in range(int(n)):
        s = connect(addr)
        handshake(s)
        conns.append(s)
    with open(ready, "w") as f:
        f.write("%d\n" % len(conns))
    while not checked:
        time.sleep(0.2)
    if checked[0]:
        die("the server closed %d of the %d connections held" % (checked[0], len(conns)))


def cmd_refused(addr):
    s = connect(addr)
    try:
        b = s.recv(18)
    except ConnectionResetError:
        b = b""
    except socket.timeout:
        die("the server neither greeted nor closed a connection past its cap")
    if b:
        die("a connection past the cap was served (got %d bytes of greeting)" % len(b))


def cmd_closed(addr, how, within):
    start = time.monotonic()
    limit = start + float(within)
    s = connect(addr)
    greeting(s)
    s.settimeout(0.2)
    if how == "trickle":
        # Client flags, then an option announced as 1000 bytes long, sent a
        # byte at a time: every recv() of the server gets data well within
        # the deadline, which must hold for the handshake as a whole.
        data = struct.pack(">I", FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
        data += struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 1000) + b"x" * 1000
    elif how == "silent":
        data = b""
    else:
        die("closed: HOW is silent or trickle, not %s" % how)
    pos = 0
    while time.monotonic() < limit:
        try:
            if s.recv(4096) == b"":
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            break
        if pos < len(data):
            try:
                s.send(data[pos : pos + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            pos += 1
    else:
        die("%s: the server did not close a connection still in its handshake after %s s"
            % (how, within))
    print("nbd-hold: %s: closed after %.1f s, %d bytes sent"
          % (how, time.monotonic() - start, pos))


def cmd_idle_read(addr, secs):
    s = connect(addr)
    handshake(s)
    time.sleep(float(secs))
    cookie = 0x1234
    try:
        s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, cookie, 0, 4096))
    except (BrokenPipeError, ConnectionResetError):
        die("the server closed a connection idle in transmission for %s s" % secs)
    r = recv_exact(s, 16)
    if r is None:
        die("the server closed a connection idle in transmission for %s s" % secs)
    magic, error, got = struct.unpack(">IIQ", r)
    if magic != SIMPLE_REPLY_MAGIC or got != cookie or error != 0:
        die("bad reply to a read: magic %#x error %d cookie %#x" % (magic, error, got))
    if recv_exact(s, 4096) is None:
        die("the server closed the connection in the middle of a read's data")


def main(argv):
    cmds = {
        "port": (cmd_port, 0),
        "hold": (cmd_hold, 3),
        "refused": (cmd_refused, 1),
        "closed": (cmd_closed, 3),
        "idle-read": (cmd_idle_read, 2),
    }
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    fn, _ = cmds[argv[1]]
    fn(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
