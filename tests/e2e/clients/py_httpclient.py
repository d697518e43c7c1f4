#!/usr/bin/python3
"""Common client interface, Python http.client: one HTTPConnection for all
--repeat requests (keep-alive); --chunked uses encode_chunked=True."""
import os
import sys
import http.client
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

a = common.parse(sys.argv[1:])
u = urlsplit(a.url)
path = (u.path or "/") + ("?" + u.query if u.query else "")
conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
rc = 0
for _ in range(a.repeat):
    hdrs = dict(a.headers)
    if a.chunked and a.body is not None:
        conn.request(a.method, path, body=common.chunks(a.body), headers=hdrs, encode_chunked=True)
    else:
        conn.request(a.method, path, body=a.body, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    if not 200 <= r.status < 300:
        sys.stderr.write("status %d\n" % r.status)
        rc = 1
conn.close()
sys.exit(rc)
