"""scripts/layout/profile.sh: Python requests through the library: a keep-alive Session
and a new connection per request, to URL."""
import sys

import requests

url = sys.argv[1]
session = requests.Session()
for _ in range(20):
    r = session.get(url, timeout=5)
    assert r.status_code == 200 and b"stub proxy" in r.content, r.content
for _ in range(5):
    r = requests.get(url, timeout=5)
    assert r.status_code == 200 and b"stub proxy" in r.content, r.content
