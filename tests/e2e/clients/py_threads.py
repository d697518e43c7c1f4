#!/usr/bin/python3
"""THREADS threads x N requests; even threads keep one http.client connection,
odd threads open a new connection per request.
usage: py_threads.py URL THREADS N
stdout: every response body (one JSON line each); exit 0 iff all were 200."""
import http.client
import sys
import threading
from urllib.parse import urlsplit

url, threads, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = urlsplit(url)
results = []
lock = threading.Lock()
errors = []


def worker(t):
    c = None
    try:
        for i in range(n):
            if c is None or t % 2:
                if c is not None:
                    c.close()
                c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
            c.request("GET", "%s?t=%d&i=%d" % (u.path, t, i))
            r = c.getresponse()
            body = r.read()
            with lock:
                results.append((r.status, body))
        c.close()
    except Exception as e:
        with lock:
            errors.append("thread %d: %r" % (t, e))


ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
for st, body in results:
    sys.stdout.buffer.write(body if body.endswith(b"\n") else body + b"\n")
for e in errors:
    sys.stderr.write(e + "\n")
sys.exit(0 if not errors and all(st == 200 for st, _ in results) else 1)
