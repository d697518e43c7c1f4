"""make bench: one blocking Python `requests` client, run by blocking.py in the lab's
namespace, with or without the library preloaded.

    client.py MODE URL N WARM HEADERS_JSON VERIFY [LIB]

MODE "session": one requests.Session, keep-alive on one connection; "get": requests.get,
a new connection per request. WARM requests first (not timed: the library's set-up and
handshake, the first connection), then N timed. VERIFY: a CA file or "-" (http). LIB:
the library's path, to report its own mappings after the traffic. BENCH_TLS_SETUP=CAFILE
(direct mode only): the client also builds, for each connection it makes, what requests
builds for an https connection verified with CAFILE short of the handshake (urllib3's
SSLContext, the CA loaded, an SSL object): the part of an https row that is the client's
own TLS work, not the library's. BENCH_TURNS=R,W,READY: the client takes turns with others
(a ring of pipes, blocking.py's): once warm it writes a byte to fd READY (no client's
timed requests may meet another's start-up), then before each timed request it waits for
a byte on fd R, after it writes one to fd W, so that every arm of a row meets the machine
in the same state (a 2-core VM's speed drifts by ±10% within seconds: arms run one after
the other differed by more than the library's cost). Prints one line:
"us_per_req <mean> us_median <median request> hwm_kib <VmHWM> lib_rss_kib <Rss> lib_dirty_kib <Private_Dirty>".
"""
import json
import os
import ssl
import sys
import time

import requests
from urllib3.util.ssl_ import create_urllib3_context

mode, url, n, warm, headers, verify = sys.argv[1:7]
lib = sys.argv[7] if len(sys.argv) > 7 else None
n, warm, headers = int(n), int(warm), json.loads(headers)
verify = True if verify == "-" else verify

if mode == "session":
    session = requests.Session()
    get = lambda: session.get(url, headers=headers, verify=verify)
else:
    get = lambda: requests.get(url, headers=headers, verify=verify)


tls_ca = os.environ.get("BENCH_TLS_SETUP")
tls_objects = None


def tls_setup():
    """What urllib3's HTTPSConnection.connect and requests' cert_verify do for an https
    connection with verify=CAFILE, but the handshake and the encryption."""
    global tls_objects
    if not os.path.exists(tls_ca) or os.path.isdir(tls_ca):  # requests' two stats
        sys.exit("client.py: BENCH_TLS_SETUP=%s is not a CA file" % tls_ca)
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(tls_ca)
    tls_objects = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(),
                                   server_hostname="api.example.test")


def one():
    if tls_ca and (mode == "get" or tls_objects is None):
        tls_setup()  # a new connection: every request of "get", the first of "session"
    r = get()
    if r.status_code != 200 or b"nginx-bench" not in r.content:
        sys.exit("client.py: %s answered %d: %r" % (url, r.status_code, r.content[:200]))


turns = os.environ.get("BENCH_TURNS")
if turns:
    wait_fd, pass_fd, ready_fd = (int(fd) for fd in turns.split(","))
    await_turn = lambda: os.read(wait_fd, 1)
    pass_turn = lambda: os.write(pass_fd, b".")
else:
    await_turn = pass_turn = lambda: None

for _ in range(warm):
    one()
if turns:
    os.write(ready_fd, b".")
    os.close(ready_fd)  # all closed: blocking.py's wait for the warm ones ends
clock = time.perf_counter_ns
times = [0] * n
for i in range(n):
    await_turn()
    t = clock()
    one()
    times[i] = clock() - t
    pass_turn()
mean = sum(times) / n
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
      % (mean / 1000, times[n // 2] / 1000, hwm, rss, dirty))
