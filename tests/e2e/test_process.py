"""Process-level scenarios: getpeername, non-HTTP protocols on port 80, shells,
fork and threads."""
import json
import os

import pytest

from conftest import (CLIENT_DIR, PY, assert_direct, assert_ok, assert_proxied,
                      describe, echoes, hdr, one_echo)

API = "203.0.113.10:80"


def test_getpeername_reports_original_destination(lab, need_lib, tag):
    res = lab.run([PY, os.path.join(CLIENT_DIR, "py_peername.py"), "203.0.113.10", "80",
                   "api.example.test", tag], debug=True)
    assert_ok(res)
    lines = res.out.decode().splitlines()
    assert json.loads(lines[0]) == {"peer": "203.0.113.10:80"}, describe(res)
    e = json.loads(lines[1])
    assert_proxied(e, res, "api.example.test", origin=API, path=tag)
    assert json.loads(lines[2])["peer_after"] == "203.0.113.10:80", describe(res)


@pytest.mark.parametrize("kind,ip", [("echo", "203.0.113.12"), ("banner", "203.0.113.13")])
def test_non_http_on_port_80_untouched(lab, need_lib, kind, ip):
    """A client-speaks-first binary protocol and a server-speaks-first line protocol
    on port 80 of external addresses work exactly as without the library."""
    before = lab.haproxy_log()
    res = lab.run([PY, os.path.join(CLIENT_DIR, "py_lineproto.py"), kind, ip, "80"],
                  debug=True, timeout=30)
    assert res.rc == 0, "non-HTTP exchange broken under the library\n" + describe(res)
    out = json.loads(res.out)
    assert out["ok"] and out["peer"] == ip + ":80", out
    new = lab.haproxy_log()[len(before):]
    assert "lunar_traffic" not in new, "non-HTTP traffic reached the proxy:\n" + new


@pytest.mark.parametrize("kind,ip", [("echo", "203.0.113.12"), ("banner", "203.0.113.13")])
def test_non_http_without_library(lab, kind, ip):
    res = lab.run([PY, os.path.join(CLIENT_DIR, "py_lineproto.py"), kind, ip, "80"],
                  preload=False, timeout=30)
    assert res.rc == 0, describe(res)


def test_sh_c_curl_is_intercepted(lab, need_lib, tag):
    res = lab.run(["sh", "-c", "curl -sS http://api.example.test%s" % tag], debug=True)
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)


def test_sh_c_pipeline_output_unchanged(lab, need_lib, tag):
    """The program's stdout is not touched by the library (logs go to stderr)."""
    res = lab.run(["sh", "-c", "curl -sS http://api.example.test/bytes/1000 | sha256sum"],
                  debug=True)
    assert_ok(res)
    import hashlib
    from conftest import labmod
    assert res.out.decode().split()[0] == hashlib.sha256(labmod.pattern_bytes(1000)).hexdigest()


@pytest.mark.parametrize("parent_first", [False, True], ids=["fresh", "parent-first"])
def test_forked_workers(lab, need_lib, tag, parent_first):
    argv = [PY, os.path.join(CLIENT_DIR, "py_fork.py"), "http://api.example.test" + tag, "4", "5"]
    if parent_first:
        argv.append("--parent-first")
    res = lab.run(argv, debug=True, timeout=60)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 20 + (1 if parent_first else 0), "got %d responses\n%s" % (len(es), describe(res))
    rids = [assert_proxied(e, res, "api.example.test", origin=API) for e in es]
    assert len(set(rids)) == len(rids), "duplicate req-ids across forked workers"
    per_worker = {}
    for e in es:
        w = e["path"].split("w=")[1].split("&")[0]
        per_worker.setdefault(w, set()).add(hdr(e, "x-seen-src"))
    for w, srcs in per_worker.items():
        assert len(srcs) == 1, "worker %s used several proxy connections: %s" % (w, srcs)


def test_threads_200_requests(lab, need_lib, tag):
    res = lab.run([PY, os.path.join(CLIENT_DIR, "py_threads.py"), "http://api.example.test" + tag,
                   "20", "10"], debug=False, timeout=120)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 200, "got %d responses\n%s" % (len(es), describe(res))
    rids = [assert_proxied(e, res, "api.example.test", origin=API) for e in es]
    assert len(set(rids)) == 200, "req-ids not unique over 200 requests"
    paths = {e["path"] for e in es}
    assert len(paths) == 200, "some responses were mixed up between threads"


def test_threads_mixed_internal_external(lab, need_lib, tag):
    """Threads of one process to an external host (proxied) and an internal one (direct)."""
    import threading
    results = {}

    def go(url, key):
        results[key] = lab.run([PY, os.path.join(CLIENT_DIR, "py_threads.py"), url, "4", "5"],
                               debug=False, timeout=60)
    t1 = threading.Thread(target=go, args=("http://api.example.test" + tag, "ext"))
    t2 = threading.Thread(target=go, args=("http://127.0.0.2" + tag, "int"))
    t1.start(), t2.start(), t1.join(), t2.join()
    for key in ("ext", "int"):
        assert_ok(results[key])
        n = len(echoes(results[key]))
        assert n == 20, "%s: got %d responses\n%s" % (key, n, describe(results[key]))
    # assert_proxied checks each x-lunar-req-id against UUID4
    rids = [assert_proxied(e, results["ext"], "api.example.test", origin=API)
            for e in echoes(results["ext"])]
    assert len(set(rids)) == 20, "req-ids not unique over 20 requests: %s" % rids
    for e in echoes(results["int"]):
        assert_direct(e, results["int"], origin="127.0.0.2:80")


# One keep-alive connection, and between its two requests a subprocess: Python (3.10 and
# later) starts it with vfork, and the child closes every fd from 3 up before its exec.
KEEPALIVE_AROUND_A_SUBPROCESS = r"""
import http.client, subprocess, sys
tag = sys.argv[1]
conn = http.client.HTTPConnection("api.example.test")
for name in ("p1", "p2"):
    conn.request("GET", "%s/%s" % (tag, name))
    answer = conn.getresponse()
    sys.stdout.write(answer.read().decode() + "\n")
    if name == "p1":
        subprocess.run(["/bin/true"], check=True)
"""


def test_a_vfork_childs_closes_leave_the_parents_connection_diverted(lab, need_lib, tag):
    """The vfork child runs in the parent's memory until its exec: its close_range is its
    own, and the parent's next request on the kept connection still carries Lunar's
    headers (before: the parent's entry was dropped, the request reached the proxy bare
    and got its 401)."""
    res = lab.run([PY, "-c", KEEPALIVE_AROUND_A_SUBPROCESS, tag], debug=True)
    assert_ok(res)
    p1, p2 = echoes(res)
    assert_proxied(p1, res, lunar_host="api.example.test")
    assert_proxied(p2, res, lunar_host="api.example.test")
