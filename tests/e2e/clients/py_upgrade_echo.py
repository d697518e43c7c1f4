"""An accepted upgrade on port 80: GET /upgrade with `Upgrade: x-echo` (the lab origin
answers 101 and echoes every byte after it), then messages of the new protocol that look
like HTTP to a parser (a request line and head) or are too short to tell (`PING`, no line
end): each must come back byte for byte.
usage: py_upgrade_echo.py HOST TAG.  stdout: "101" then one "echo ok N" line per message."""
import socket
import sys

host, tag = sys.argv[1], sys.argv[2]
s = socket.create_connection((host, 80), timeout=10)
s.sendall(b"GET /upgrade?t=%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\n"
          b"Upgrade: x-echo\r\n\r\n" % (tag.encode(), host.encode()))
head = b""
while b"\r\n\r\n" not in head:
    got = s.recv(1)
    if not got:
        sys.exit("closed before the answer's head: %r" % head)
    head += got
status = head.split(b"\r\n", 1)[0]
if b" 101 " not in status + b" ":
    sys.exit("not switched: %r" % head)
print("101", flush=True)
for i, message in enumerate([b"GET /inside HTTP/1.1\r\nHost: h\r\n\r\n", b"PING",
                             b"\x81\x05hello"]):
    s.sendall(message)
    echoed = b""
    while len(echoed) < len(message):
        got = s.recv(len(message) - len(echoed))
        if not got:
            sys.exit("closed during echo %d: %r" % (i, echoed))
        echoed += got
    if echoed != message:
        sys.exit("echo %d: sent %r, got %r" % (i, message, echoed))
    print("echo ok", i, flush=True)
s.close()
