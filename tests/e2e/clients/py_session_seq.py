#!/usr/bin/python3
"""Requests on ONE keep-alive connection, one step after the other (requests.Session).
usage: py_session_seq.py BASE_URL INTERVAL STEP...
  STEP: PATH or PATH|Name: value|Name: value (headers of that request only)
Before each request "[client] request I" goes to stderr (the library's lines that
follow belong to request I); then INTERVAL seconds pass after each response. stdout:
one JSON line per request {"i", "ts" (epoch at send), "status", "len", "sha256",
"connections" (new connections the Session's pool has made so far)} or {"i",
"error"}. Exit 0 iff every status was 2xx."""
import hashlib
import json
import sys
import time

import requests

base, interval, steps = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
s = requests.Session()
pool = s.get_adapter(base).poolmanager.connection_from_url(base)
rc = 0
for i, step in enumerate(steps):
    path, *hs = step.split("|")
    headers = dict((k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in hs))
    sys.stderr.write("[client] request %d\n" % i)
    sys.stderr.flush()
    rec = {"i": i, "ts": time.time()}
    try:
        r = s.get(base + path, headers=headers, timeout=30)
        rec.update(status=r.status_code, len=len(r.content),
                   sha256=hashlib.sha256(r.content).hexdigest())
        if not 200 <= r.status_code < 300:
            rc = 1
    except requests.RequestException as e:
        rec["error"] = "%s: %s" % (type(e).__name__, e)
        rc = 1
    rec["connections"] = pool.num_connections
    print(json.dumps(rec), flush=True)
    if i + 1 < len(steps):
        time.sleep(interval)
s.close()
sys.exit(rc)
