#!/usr/bin/python3
"""WORKERS forked children x N requests each (one http.client connection per child).
--parent-first: the parent makes one request before forking (library already
initialised and a connection already diverted in the parent).
usage: py_fork.py URL WORKERS N [--parent-first]
stdout: every response body (one JSON line each); exit 0 iff all were 200."""
import http.client
import os
import sys
from urllib.parse import urlsplit

url, workers, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = urlsplit(url)


def requests(count, who):
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=20)
    ok = True
    for i in range(count):
        c.request("GET", "%s?w=%s&i=%d" % (u.path, who, i))
        r = c.getresponse()
        body = r.read()
        os.write(1, body if body.endswith(b"\n") else body + b"\n")
        ok = ok and r.status == 200
    c.close()
    return ok


if "--parent-first" in sys.argv:
    if not requests(1, "parent"):
        sys.exit(1)
pids = []
for w in range(workers):
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if requests(n, str(w)) else 1)
        except BaseException as e:
            os.write(2, ("child %d: %r\n" % (w, e)).encode())
            os._exit(2)
    pids.append(pid)
rc = 0
for pid in pids:
    _, st = os.waitpid(pid, 0)
    if st != 0:
        rc = 1
sys.exit(rc)
