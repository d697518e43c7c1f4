#!/usr/bin/python3
"""Common client interface, Python urllib.request: a new connection per request
(urllib has no keep-alive); --chunked passes an iterable body without
Content-Length, which urllib sends chunked."""
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

a = common.parse(sys.argv[1:])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
rc = 0
for _ in range(a.repeat):
    data = a.body
    if a.chunked and data is not None:
        data = common.chunks(data)
    req = urllib.request.Request(a.url, data=data, method=a.method, headers=dict(a.headers))
    try:
        with opener.open(req, timeout=30) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()
    if not 200 <= status < 300:
        sys.stderr.write("status %d\n" % status)
        rc = 1
sys.exit(rc)
