#!/usr/bin/python3
"""Common client interface, Python http.client over TLS: one HTTPSConnection for
all --repeat requests (keep-alive), the default context (system CA store, or
SSL_CERT_FILE; host name checked); --chunked uses encode_chunked=True."""
import os
import ssl
import sys
import http.client
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

a = common.parse(sys.argv[1:])
u = urlsplit(a.url)
path = (u.path or "/") + ("?" + u.query if u.query else "")
conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=30,
                                   context=ssl.create_default_context())
rc = 0
try:
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
except (OSError, http.client.HTTPException) as e:  # ssl.SSLCertVerificationError included
    sys.stderr.write("py_httpsclient.py: %s: %s\n" % (type(e).__name__, e))
    rc = 1
conn.close()
sys.exit(rc)
