"""make bench: one blocking Python `requests` client, run by blocking.py in the lab's
namespace, with or without the library preloaded.

    client.py MODE URL N WARM HEADERS_JSON VERIFY [LIB]

MODE "session": one requests.Session, keep-alive on one connection; "get": requests.get,
a new connection per request. WARM requests first (not timed: the library's set-up and
handshake, the first connection), then N timed. VERIFY: a CA file or "-" (http). LIB:
the library's path, to report its own mappings after the traffic. Prints one line:
"us_per_req <mean> us_median <median request> hwm_kib <VmHWM> lib_rss_kib <Rss> lib_dirty_kib <Private_Dirty>".
"""
import json
import sys
import time

import requests

mode, url, n, warm, headers, verify = sys.argv[1:7]
lib = sys.argv[7] if len(sys.argv) > 7 else None
n, warm, headers = int(n), int(warm), json.loads(headers)
verify = True if verify == "-" else verify

if mode == "session":
    session = requests.Session()
    get = lambda: session.get(url, headers=headers, verify=verify)
else:
    get = lambda: requests.get(url, headers=headers, verify=verify)


def one():
    r = get()
    if r.status_code != 200 or b"nginx-bench" not in r.content:
        sys.exit("client.py: %s answered %d: %r" % (url, r.status_code, r.content[:200]))


for _ in range(warm):
    one()
clock = time.perf_counter_ns
times = [0] * n
t0 = clock()
for i in range(n):
    t = clock()
    one()
    times[i] = clock() - t
t1 = clock()
times.sort()

hwm = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        hwm = int(line.split()[1])
rss = dirty = 0
if lib:
    sys.dont_write_bytecode = True
    from smaps import lib_mappings  # this script's folder is sys.path[0]
    rss, dirty = lib_mappings("self", lib)
print("us_per_req %.3f us_median %.3f hwm_kib %d lib_rss_kib %d lib_dirty_kib %d"
      % ((t1 - t0) / 1000 / n, times[n // 2] / 1000, hwm, rss, dirty))
