#!/usr/bin/python3
"""One GET that reports everything a test needs about how it ended: the status,
headers and body the program got, or its error; how long it took and how much CPU
the process used meanwhile (all threads, a preloaded library's too).

usage: py_wait_client.py URL [--nonblocking] [--timeout SEC]

  (default)       http.client.HTTPConnection (blocking socket with a timeout)
  --nonblocking   asyncio streams (non-blocking socket, epoll); the whole exchange
                  under asyncio.wait_for(..., SEC): the client's own timeout
  --timeout SEC   the client's own timeout (default 30)

stdout: one JSON line {"status", "reason", "headers": [[k, v]...], "body" (latin-1),
"error" (e.g. "timeout", "TimeoutError: ...", "ConnectionResetError: ..."), "elapsed"
(s, wall clock of the request), "cpu" (s, user+system of the process during the
request)}. Exit 0 iff a complete response (any status) was read."""
import asyncio
import http.client
import json
import resource
import sys
import time
from urllib.parse import urlsplit

args = sys.argv[1:]
nonblocking = "--nonblocking" in args
timeout = 30.0
if "--timeout" in args:
    timeout = float(args[args.index("--timeout") + 1])
url = args[0]
u = urlsplit(url)
host, port = u.hostname, u.port or 80
path = (u.path or "/") + ("?" + u.query if u.query else "")
hosthdr = host + ("" if port == 80 else ":%d" % port)


def cpu_now():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def read_response(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before the response")
    parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    status, reason = int(parts[1]), (parts[2] if len(parts) > 2 else "")
    headers = []
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ConnectionError("connection closed in the response head")
        k, _, v = line.decode("latin-1").partition(":")
        headers.append([k.strip(), v.strip()])
    hd = {k.lower(): v for k, v in headers}
    if "content-length" in hd:
        body = await reader.readexactly(int(hd["content-length"]))
    else:
        body = await reader.read()
    return status, reason, headers, body


async def exchange():
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: py_wait_client\r\n"
                      "Accept: */*\r\n\r\n" % (path, hosthdr)).encode("latin-1"))
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


out = {"status": None, "reason": None, "headers": [], "body": None, "error": None}
t0, c0 = time.monotonic(), cpu_now()
try:
    if nonblocking:
        try:
            st, reason, headers, body = asyncio.run(asyncio.wait_for(exchange(), timeout))
        except asyncio.TimeoutError:
            raise TimeoutError("timeout")
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.request("GET", path, headers={"User-Agent": "py_wait_client"})
        r = conn.getresponse()
        st, reason, headers, body = r.status, r.reason, [list(h) for h in r.getheaders()], r.read()
        conn.close()
    out.update(status=st, reason=reason, headers=headers, body=body.decode("latin-1"))
except Exception as e:  # noqa: BLE001 - reported, the test decides
    out["error"] = "timeout" if str(e) == "timeout" else "%s: %s" % (type(e).__name__, e)
out["elapsed"] = round(time.monotonic() - t0, 3)
out["cpu"] = round(cpu_now() - c0, 3)
print(json.dumps(out))
sys.exit(0 if out["status"] is not None else 1)
