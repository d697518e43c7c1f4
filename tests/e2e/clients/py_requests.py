"""Common client interface, `requests` (urllib3 over Python's ssl): one Session for
all --repeat requests (keep-alive pool); CA bundle from REQUESTS_CA_BUNDLE (trust_env);
--chunked passes a generator body (sent chunked). Run with the venv's python."""
import os
import sys

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

a = common.parse(sys.argv[1:])
s = requests.Session()
rc = 0
try:
    for _ in range(a.repeat):
        data = a.body
        if a.chunked and data is not None:
            data = common.chunks(data)
        r = s.request(a.method, a.url, data=data, headers=dict(a.headers), timeout=30)
        sys.stdout.buffer.write(r.content)
        sys.stdout.buffer.flush()
        if not 200 <= r.status_code < 300:
            sys.stderr.write("status %d\n" % r.status_code)
            rc = 1
except requests.RequestException as e:  # requests.exceptions.SSLError included
    sys.stderr.write("py_requests.py: %s: %s\n" % (type(e).__name__, e))
    rc = 1
s.close()
sys.exit(rc)
