#!/usr/bin/python3
"""Non-HTTP line protocols inside TLS (Python ssl over a blocking socket).

usage: py_tls_line.py echo   HOST PORT CAFILE PAYLOAD   client speaks first: PAYLOAD
                                                        sent, the same bytes must
                                                        come back
       py_tls_line.py banner HOST PORT CAFILE WORD      server speaks first: read the
                                                        banner, "HELLO WORD" -> "250
                                                        HELLO WORD", QUIT -> "221 bye"

HOST is connected to by name (socket.create_connection, so a preloaded library learns
the name); the server's certificate is verified against CAFILE only and HOST
(ssl.create_default_context(cafile=...), server_hostname=HOST). PAYLOAD takes the
escapes \\n and \\r. Every socket operation times out after 8 s.

stdout: one JSON line {"kind", "ok", "tls_version", "cipher", "got" (latin-1) or
"banner"/"replies", "error"}; exit 0 iff the exchange was right and the session was
verified TLS."""
import json
import socket
import ssl
import sys

kind, host, port, cafile, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
out = {"kind": kind, "ok": False}
ok = False
s = None
try:
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection((host, port), timeout=8)
    s = ctx.wrap_socket(raw, server_hostname=host)
    out["tls_version"] = s.version()
    out["cipher"] = (s.cipher() or [None])[0]
    if kind == "echo":
        data = arg.replace("\\n", "\n").replace("\\r", "\r").encode("latin-1")
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            d = s.recv(65536)
            if not d:
                break
            got += d
        out["got"] = got.decode("latin-1")
        ok = got == data
    else:
        f = s.makefile("rb")
        banner = f.readline()
        out["banner"] = banner.decode("latin-1")
        s.sendall(b"HELLO " + arg.encode() + b"\r\n")
        r1 = f.readline()
        s.sendall(b"QUIT\r\n")
        r2 = f.readline()
        out["replies"] = [r1.decode("latin-1"), r2.decode("latin-1")]
        ok = (banner.startswith(b"220 ") and r1 == b"250 HELLO " + arg.encode() + b"\r\n"
              and r2 == b"221 bye\r\n")
except (OSError, ValueError) as e:  # ssl.SSLError and socket.timeout included
    out["error"] = "%s: %s" % (type(e).__name__, e)
finally:
    if s is not None:
        try:
            s.close()
        except OSError:
            pass
out["ok"] = ok
print(json.dumps(out))
sys.exit(0 if ok else 1)
