#!/usr/bin/python3
"""Non-HTTP protocols on port 80.
usage: py_lineproto.py echo IP PORT     client speaks first: 4 KiB of binary sent,
                                        the same bytes must come back
       py_lineproto.py banner IP PORT   server speaks first: read the banner, then
                                        HELLO -> 250 HELLO, QUIT -> 221 bye
stdout: one JSON line with what happened; exit 0 iff the exchange was right."""
import hashlib
import json
import socket
import sys

kind, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((ip, port), timeout=5)
out = {"kind": kind, "peer": "%s:%d" % s.getpeername()[:2]}
ok = False
try:
    if kind == "echo":
        data = bytes([0x16, 0x03, 0x01, 0x00, 0xff]) + bytes(range(256)) * 16
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            d = s.recv(65536)
            if not d:
                break
            got += d
        out["sent"] = len(data)
        out["got"] = len(got)
        ok = got == data
        out["sha_ok"] = ok
    else:
        f = s.makefile("rb")
        banner = f.readline()
        out["banner"] = banner.decode("latin-1")
        s.sendall(b"HELLO\r\n")
        r1 = f.readline()
        s.sendall(b"QUIT\r\n")
        r2 = f.readline()
        out["replies"] = [r1.decode("latin-1"), r2.decode("latin-1")]
        ok = banner.startswith(b"220 ") and r1 == b"250 HELLO\r\n" and r2 == b"221 bye\r\n"
except OSError as e:
    out["error"] = repr(e)
s.close()
out["ok"] = ok
print(json.dumps(out))
sys.exit(0 if ok else 1)
