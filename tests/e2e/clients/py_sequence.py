#!/usr/bin/python3
"""Several requests with tricky response framing on ONE http.client connection:
HEAD, 204, 304, a normal GET, a 100000-byte GET, a POST, a chunked response.
usage: py_sequence.py HOST PATH
stdout: one JSON line per response {"req", "status", "len", "sha256", "body"
(the echo JSON when there is one)}; exit 0 iff every status was as expected."""
import hashlib
import http.client
import json
import sys

host, path = sys.argv[1], sys.argv[2]
c = http.client.HTTPConnection(host, 80, timeout=20)
steps = [
    ("HEAD", path + "/head", None, 200),
    ("GET", "/status/204?" + path, None, 204),
    ("GET", "/status/304?" + path, None, 304),
    ("GET", path + "/get", None, 200),
    ("GET", "/bytes/100000?" + path, None, 200),
    ("POST", path + "/post", b"x" * 70000, 200),
    ("GET", "/chunked/5000?" + path, None, 200),
    ("GET", path + "/last", None, 200),
]
rc = 0
for method, p, body, want in steps:
    c.request(method, p, body=body)
    r = c.getresponse()
    data = r.read()
    rec = {"req": "%s %s" % (method, p), "status": r.status, "len": len(data),
           "sha256": hashlib.sha256(data).hexdigest()}
    if data.startswith(b"{"):
        rec["body"] = json.loads(data)
    print(json.dumps(rec), flush=True)
    if r.status != want:
        rc = 1
c.close()
sys.exit(rc)
