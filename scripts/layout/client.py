"""scripts/layout/profile.sh: Python requests through the library: a keep-alive Session
(GETs answered with a length, chunked, and late, POSTs with a body) and a new connection
per request, to URL."""
import sys

import requests

url = sys.argv[1]
session = requests.Session()
for _ in range(10):
    for r in (session.get(url, timeout=5), session.get(url + "/chunked", timeout=5),
              session.post(url, data=b"x" * 3000, timeout=5), session.get(url + "/later", timeout=5)):
        assert r.status_code == 200 and b"stub proxy" in r.content, r.content
for _ in range(5):
    r = requests.get(url, timeout=5)
    assert r.status_code == 200 and b"stub proxy" in r.content, r.content
