#!/usr/bin/python3
"""Long-running threaded http.client load with integrity checks and a resource audit.

usage: py_chaos.py URL THREADS N [--reconnect-every K] [--seed S]

THREADS threads x N requests against the origin of URL (e.g.
http://api.example.test/t/x: its path is the tag; GETs carry it as a query parameter).
Each thread keeps one keep-alive HTTPConnection and opens a new one every K
requests (default 4; thread t uses K + t so the threads differ) and after any
error. Requests alternate: GET /bytes/<n>?tag=TAG (the body must be the lab origin's
pattern of n bytes) and, every third request, POST TAG with a random body of
0..20000 bytes (the origin's echo must show the same sha256 and length).

Resource audit: /proc/self/fd entries and /proc/self/task entries (OS threads, the
library's included) plus threading.active_count() at start (before any network
activity), after one warm-up request, and at the end (all connections closed,
workers joined; the OS thread count is then polled for up to 2 s so that a
short-lived recovery thread of the library can finish).

stdout: one JSON object {"requests", "ok", "failures" (first 20), "by_kind",
"fd_start", "fd_warm", "fd_end", "fds_end" (fd -> target, for a leak report),
"tasks_start", "tasks_warm", "tasks_end", "py_threads_start", "py_threads_end",
"elapsed"}. Exit 0 iff every request succeeded."""
import argparse
import hashlib
import http.client
import json
import os
import random
import sys
import threading
import time
from urllib.parse import urlsplit

PATTERN = bytes(range(251))


def pattern_bytes(n):
    return (PATTERN * (n // 251 + 1))[:n]


def fds():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass  # the listing's own fd, closed by now
    return out


def tasks():
    return len(os.listdir("/proc/self/task"))


def recovery_threads():
    """The library's background recovery threads alive now (named lunar-recovery)."""
    alive = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/comm" % task) as f:
                alive += f.read().strip() == "lunar-recovery"
        except OSError:
            pass  # ended while listed
    return alive


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("threads", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--reconnect-every", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    u = urlsplit(a.base)
    host, port, tag = u.hostname, u.port or 80, u.path or "/"

    fd_start, tasks_start, pyt_start = len(fds()), tasks(), threading.active_count()

    def one(conn, rng, i):
        """One request on conn; returns None when good, else a description."""
        if i % 3 == 2:
            body = rng.randbytes(rng.randrange(0, 20001))
            conn.request("POST", "%s?i=%d" % (tag, i), body=body,
                          headers={"Content-Type": "application/octet-stream"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                return "POST status %d body %r" % (r.status, data[:200])
            try:
                echo = json.loads(data)
            except ValueError:
                return "POST answer not the origin's echo: %r" % data[:200]
            if echo.get("body_sha256") != hashlib.sha256(body).hexdigest() or \
                    echo.get("body_len") != len(body):
                return "POST body differs at the origin (len %s, want %d)" % (echo.get("body_len"), len(body))
            return None
        n = rng.randrange(0, 30001)
        conn.request("GET", "/bytes/%d?tag=%s&i=%d" % (n, tag, i))
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            return "GET status %d body %r" % (r.status, data[:200])
        if data != pattern_bytes(n):
            return "GET /bytes/%d: %d bytes, content differs" % (n, len(data))
        return None

    # warm-up: one request, connection closed (the library's lazy set-up is done)
    c = http.client.HTTPConnection(host, port, timeout=15)
    warm_err = None
    try:
        warm_err = one(c, random.Random(a.seed), 0)
    except Exception as e:
        warm_err = "warm-up: %r" % (e,)
    c.close()
    # A recovery of the warm-up's request ends its thread just after waking our read: the
    # baseline is taken once it is gone (one still alive at the end is a leak).
    deadline = time.time() + 2.0
    while time.time() < deadline and recovery_threads():
        time.sleep(0.01)
    fd_warm, tasks_warm = len(fds()), tasks()

    lock = threading.Lock()
    stats = {"requests": 1, "ok": 0 if warm_err else 1, "failures": [], "by_kind": {}}
    if warm_err:
        stats["failures"].append("warm-up: " + warm_err)

    def worker(t):
        rng = random.Random(a.seed * 1000 + t)
        every = a.reconnect_every + t
        conn = None
        for i in range(a.n):
            if conn is None or i % every == 0:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=15)
            kind = "post" if i % 3 == 2 else "get"
            try:
                err = one(conn, rng, i)
            except Exception as e:
                err = "%s: %r" % (kind, e)
            if err:
                conn.close()
                conn = None
            with lock:
                stats["requests"] += 1
                k = stats["by_kind"].setdefault(kind, [0, 0])
                k[0] += 1
                if err:
                    if len(stats["failures"]) < 20:
                        stats["failures"].append("thread %d request %d: %s" % (t, i, err))
                else:
                    stats["ok"] += 1
                    k[1] += 1
        if conn is not None:
            conn.close()

    t0 = time.time()
    ths = [threading.Thread(target=worker, args=(t,)) for t in range(a.threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    elapsed = time.time() - t0
    deadline = time.time() + 2.0
    while time.time() < deadline and (tasks() > tasks_warm or len(fds()) > fd_warm):
        time.sleep(0.05)
    end_fds = fds()
    stats.update({
        "fd_start": fd_start, "fd_warm": fd_warm, "fd_end": len(end_fds), "fds_end": end_fds,
        "tasks_start": tasks_start, "tasks_warm": tasks_warm, "tasks_end": tasks(),
        "py_threads_start": pyt_start, "py_threads_end": threading.active_count(),
        "elapsed": round(elapsed, 2),
    })
    print(json.dumps(stats), flush=True)
    return 0 if stats["ok"] == stats["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
