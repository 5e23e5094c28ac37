#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# Socket activation as systemd does it, for the tests: listen on each
# address given, put the sockets on descriptors 3, 4, ..., set LISTEN_FDS
# and LISTEN_PID (our pid, which exec keeps), and exec the command.
#
#   activate.py [--pid-off] [--not-socket] ADDRESS... -- COMMAND...
# ADDRESS: unix:PATH, or tcp:HOST:PORT (PORT 0: any free port; the port
# chosen is written to the file $ACTIVATE_PORT_FILE, if set).
# --pid-off sets LISTEN_PID to another pid: the sockets are not for us.
# --not-socket passes a pipe as descriptor 3 instead.
import fcntl
import os
import socket
import sys

args = sys.argv[1:]
pid_off = not_socket = False
while args and args[0].startswith("--") and args[0] != "--":
    if args[0] == "--pid-off":
        pid_off = True
    elif args[0] == "--not-socket":
        not_socket = True
    args.pop(0)
sep = args.index("--")
addresses, command = args[:sep], args[sep + 1:]

fds = []
if not_socket:
    r, w = os.pipe()
    fds.append(r)
for a in addresses:
    kind, _, rest = a.partition(":")
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(rest)
    else:
        host, _, port = rest.rpartition(":")
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.bind((host, int(port)))
        if os.environ.get("ACTIVATE_PORT_FILE"):
            with open(os.environ["ACTIVATE_PORT_FILE"], "w") as f:
                f.write("%d\n" % s.getsockname()[1])
    s.listen(16)
    fds.append(s.detach())

# Move them to 3, 4, ... without clobbering one another: first above them all.
high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(high))
os.environ["LISTEN_PID"] = str(os.getpid() + (1 if pid_off else 0))
os.environ["LISTEN_FDNAMES"] = ":".join("x" for _ in high)
os.execvp(command[0], command)
