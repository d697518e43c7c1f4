#!/usr/bin/python3
"""COUNT requests, one every INTERVAL seconds, each on a new http.client connection.
Before each request a marker line goes to stderr ("[client] request I t=T"), so the
library's log lines that follow it belong to that request. stdout: one JSON line
per request {"i", "t", "ts", "t_end", "ts_end", "status", "via_proxy", "echo"}
(t relative to the start, ts absolute epoch seconds).
usage: py_loop.py URL COUNT INTERVAL"""
import http.client
import json
import sys
import time
from urllib.parse import urlsplit

url, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
u = urlsplit(url)
t0 = time.time()
rc = 0
for i in range(count):
    t = time.time() - t0
    sys.stderr.write("[client] request %d t=%.3f\n" % (i, t))
    sys.stderr.flush()
    rec = {"i": i, "t": round(t, 3), "ts": time.time()}
    try:
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=20)
        c.request("GET", "%s?i=%d" % (u.path, i))
        r = c.getresponse()
        body = r.read()
        c.close()
        rec["status"] = r.status
        echo = json.loads(body)
        rec["via_proxy"] = any(k.lower() == "x-via-haproxy" for k, _ in echo["headers"])
        rec["echo"] = echo
        if r.status != 200:
            rc = 1
    except Exception as e:
        rec["error"] = repr(e)
        rc = 1
    rec["t_end"] = round(time.time() - t0, 3)
    rec["ts_end"] = time.time()
    print(json.dumps(rec), flush=True)
    nxt = t0 + (i + 1) * interval
    time.sleep(max(0, nxt - time.time()))
sys.exit(rc)
