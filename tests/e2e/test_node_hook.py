"""Node https through the Node hook (lang/PROTOCOL.md): `node` under the library.

Node carries its own TLS, so the library alone cannot divert its https. At load, in a
`node` process, the library injects `lunar-node-hook.cjs` (found beside the library:
`make build` copies lang/node/lunar-node-hook.cjs to target/release/) through
NODE_OPTIONS; the hook makes each qualifying tls.connect() speak plain HTTP/1.1 to the
origin's port, dressed as a TLS socket for the program, and the library diverts it like
any https request (`x-lunar-scheme: https`). Whenever the bytes must reach the origin
(block list, proxy down, x-lunar-error, a proxy closing early, cooldown...) the library
moves the socket to the hook's loopback relay, which makes the real TLS connection to
the origin with the program's own settings: the program gets the origin's answer, or
its runtime's own certificate error.

What is checked, as a user would: the request reached the proxy as plain HTTP with
`x-lunar-scheme: https` and Lunar's headers, the origin answered over TLS, the bytes
(sha256) the origin got and the program got; for every fallback, the origin got the
request once, over TLS, exactly as without the library; the certificate errors are the
runtime's own (compared with a run without the library), and nothing reached an origin
as plaintext; the program and its children see the environment the user gave
(NODE_OPTIONS, no LUNAR_NODE_HOOK), and a child `node` without the library stays inert.

Clients: the common-interface `node_https.js` (`https`, keep-alive Agent) and
`node_fetch.js` (undici), `node_seq.js` with an https URL (requests on one keep-alive
connection), and `node_hook_*.js` (clients/): `_get` (one GET, the error as data), `_worker` (https and fetch
in a worker thread), `_env` (what the program and a child node see), `_tls` (a bare
tls.connect with a chosen ALPN or a client certificate). Every client trusts the lab
CA only (`lab.tls_env()`: NODE_EXTRA_CA_CERTS). Nothing leaves the namespace.

    make build && scripts/run-e2e.sh tests/e2e/test_node_hook.py
"""
import filecmp
import json
import os
import random
import re
import time

import pytest

from conftest import CLIENT_DIR, REPO, assert_ok, describe, echoes, hdr, labmod, one_echo, sha256
from test_https import (API, API_TLS, API_TLS_8443, PORTS_8443, TESTPROXY_ENV,  # noqa: F401
                        assert_direct_tls, assert_proxied_tls, h, haproxy_down, haproxy_up,
                        proxy_log_for)
from test_https_request_routing import check_tls
from test_request_routing import COOLDOWN_ENV, Run, cooldown_routes, routes, size, wait_request

NODE = "/usr/bin/node"
URL = "https://api.example.test"
CLIENTS = ["node_https", "node_fetch"]
HOOK_SRC = os.path.join(REPO, "lang", "node", "lunar-node-hook.cjs")
UNTRUSTED_TLS = "%s:443" % labmod.UNTRUSTED_IP
# An origin's record of a TLS handshake that met plaintext (OpenSSL's words, as Python's
# ssl module reports them): a request that left the process outside TLS.
PLAINTEXT_AT_TLS = re.compile(r"HTTP_REQUEST|http request|WRONG_VERSION|wrong version|"
                              r"record layer failure|UNEXPECTED_RECORD|packet length", re.I)


# ---- fixtures and helpers ------------------------------------------------------------------

@pytest.fixture
def hook(lab, need_lib):
    """The hook beside the library under test, and the one of this tree."""
    path = os.path.join(os.path.dirname(lab.lib), "lunar-node-hook.cjs")
    if not os.path.exists(path):
        pytest.fail("no %s: the library finds the Node hook beside itself "
                    "(`make build` copies lang/node/lunar-node-hook.cjs there)" % path)
    if not filecmp.cmp(path, HOOK_SRC, shallow=False):
        pytest.fail("%s differs from %s: stale copy, run `make build`" % (path, HOOK_SRC))
    return path


@pytest.fixture(params=CLIENTS)
def cname(request):
    return request.param


def run_node(lab, client, args, env=None, preload=True, ca=None, timeout=60):
    """node CLIENT ARGS in the lab, trusting the lab CA (or `ca`) and nothing else."""
    full = lab.tls_env(ca)
    full.update(env or {})
    return lab.run([NODE, os.path.join(CLIENT_DIR, client)] + list(args), env=full,
                   preload=preload, debug=True, timeout=timeout)


def run_client(lab, tmp_path, cname, method, url, data=None, headers=(), repeat=1, env=None,
               preload=True, timeout=60):
    """One of the common-interface clients (node_https.js, node_fetch.js)."""
    args = [method, url]
    if data is not None:
        path = os.path.join(str(tmp_path), "body-%d.bin" % random.randrange(1 << 30))
        with open(path, "wb") as f:
            f.write(data)
        args += ["--data-file", path]
    for hd in headers:
        args += ["--header", hd]
    if repeat != 1:
        args += ["--repeat", str(repeat)]
    return run_node(lab, cname + ".js", args, env=env, preload=preload, timeout=timeout)


def json_lines(res):
    out = []
    for ln in res.out.decode("utf-8", "replace").splitlines():
        if ln.strip():
            try:
                out.append(json.loads(ln))
            except ValueError:
                raise AssertionError("client stdout is not JSON: %r\n%s" % (ln[:300], describe(res)))
    return out


def plaintext_at(lab, server, t0):
    """Failed handshakes at the TLS origin `server` since t0 that met plaintext."""
    return [r for r in lab.origin_log() if r.get("server") == server and r.get("t", 0) >= t0
            and PLAINTEXT_AT_TLS.search(r.get("tls_error", ""))]


def assert_no_plaintext(lab, server, t0, res):
    bad = plaintext_at(lab, server, t0)
    assert not bad, "plaintext reached the TLS origin %s: %s\n%s" % (server, bad, describe(res))


# ==== through the proxy ==========================================================================

def test_get_via_proxy(lab, hook, haproxy_up, tag, cname, tmp_path):
    t0 = time.time()
    res = run_client(lab, tmp_path, cname, "GET", URL + tag)
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, path=tag)
    assert_no_plaintext(lab, API_TLS, t0, res)


def test_post_json_via_proxy(lab, hook, haproxy_up, tag, cname, tmp_path):
    body = json.dumps({"client": cname, "hook": True, "n": [1, 2, 3], "s": "l\u00fcnar"}).encode()
    res = run_client(lab, tmp_path, cname, "POST", URL + tag, data=body,
                     headers=["Content-Type: application/json"])
    assert_ok(res)
    e = one_echo(res)
    assert_proxied_tls(e, res, path=tag)
    assert (e["method"], e["body_sha256"], hdr(e, "content-type")) == \
        ("POST", sha256(body), "application/json"), describe(res)


def test_upload_2mib_via_proxy(lab, hook, haproxy_up, tag, cname, tmp_path):
    body = random.Random(21).randbytes(2 * 1024 * 1024)
    res = run_client(lab, tmp_path, cname, "POST", URL + tag, data=body,
                     headers=["Content-Type: application/octet-stream"], timeout=90)
    assert_ok(res)
    e = one_echo(res)
    assert_proxied_tls(e, res, path=tag)
    assert (e["body_len"], e["body_sha256"]) == (len(body), sha256(body)), "body in the response"
    assert [r["body_sha256"] for r in lab.origin_log(contains=tag)] == [sha256(body)], "body at the origin"


def test_download_2mib_via_proxy(lab, hook, haproxy_up, tag, cname, tmp_path):
    n = 2 * 1024 * 1024 + 7
    path = "/bytes/%d?t=%s" % (n, tag)
    res = run_client(lab, tmp_path, cname, "GET", URL + path, timeout=90)
    assert_ok(res)
    assert sha256(res.out) == sha256(labmod.pattern_bytes(n)), describe(res)
    recs = lab.origin_log(contains=tag)
    assert len(recs) == 1, describe(res)
    r = recs[0]
    assert (r.get("scheme"), h(r, "x-via-haproxy"), h(r, "x-seen-lunar-scheme")) == \
        ("https", ["1"], ["https"]), "not through the proxy as https: %s\n%s" % (r, describe(res))


def test_keepalive_one_connection_at_proxy(lab, hook, haproxy_up, tag, cname, tmp_path):
    """3 requests on one agent/pool socket: one connection at the proxy, three request ids."""
    res = run_client(lab, tmp_path, cname, "GET", URL + tag, repeat=3)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3, describe(res)
    rids = [assert_proxied_tls(e, res, path=tag) for e in es]
    assert len(set(rids)) == 3, "request ids repeat: %s" % rids
    assert len({hdr(e, "x-seen-src") for e in es}) == 1, "not one connection at the proxy\n" + describe(res)


def test_port_8443_via_proxy(lab, hook, haproxy_up, tag, cname, tmp_path):
    res = run_client(lab, tmp_path, cname, "GET", URL + ":8443" + tag, env=PORTS_8443)
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, lunar_host=API + ":8443", server=API_TLS_8443, path=tag)


def test_port_not_intercepted_stays_real_tls(lab, hook, haproxy_up, tag, cname, tmp_path):
    """8443 without LUNAR_INTERCEPT_PORTS naming it: the program's own TLS to the origin."""
    res = run_client(lab, tmp_path, cname, "GET", URL + ":8443" + tag)
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, server=API_TLS_8443, path=tag)


def test_worker_thread_via_proxy(lab, hook, haproxy_up, tag):
    """`https` and `fetch` inside a worker thread are dressed too (the worker's hook
    reads its settings from environment data, not from its process.env)."""
    res = run_node(lab, "node_hook_worker.js", [URL + tag])
    assert_ok(res)
    lines = json_lines(res)
    es = [x for x in lines if "server" in x]
    report = [x["worker"] for x in lines if "worker" in x]
    assert [e["path"] for e in es] == [tag + "/https", tag + "/fetch"], describe(res)
    for e in es:
        assert_proxied_tls(e, res)
    assert report == [{"hook_var": False, "patched": True}], describe(res)


@pytest.mark.parametrize("alpn,dressed", [("http/1.1", True), ("h2,http/1.1", True), ("h2", False),
                                          ("cert", False)],
                         ids=["alpn-http1", "alpn-h2-and-http1", "alpn-h2-only", "client-cert"])
def test_bare_tls_connect(lab, hook, haproxy_up, tag, alpn, dressed):
    """tls.connect() itself: dressed when its ALPN offers http/1.1; an h2-only ALPN or a
    client certificate keeps the program's own TLS, straight to the origin."""
    args = [API, "443", tag]
    args += ["--cert", lab.tls_cert, "--key", lab.tls_key] if alpn == "cert" else ["--alpn", alpn]
    res = run_node(lab, "node_hook_tls.js", args)
    assert_ok(res)
    lines = json_lines(res)
    e = [x for x in lines if "server" in x]
    assert len(e) == 1, describe(res)
    if dressed:
        assert_proxied_tls(e[0], res, path=tag)
    else:
        assert_direct_tls(e[0], res, path=tag)


# ==== to the origin over real TLS (the hook's relay) =============================================

def test_block_list_tls_end_to_end(lab, hook, haproxy_up, tag, cname, tmp_path):
    t0 = time.time()
    body = b'{"blocked": true}'
    res = run_client(lab, tmp_path, cname, "POST", URL + tag, data=body,
                     headers=["Content-Type: application/json"], env={"LUNAR_BLOCK_LIST": API})
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)
    assert len(lab.origin_log(contains=tag)) == 1
    assert tag not in lab.haproxy_log(), "a block-listed request reached the proxy"
    assert_no_plaintext(lab, API_TLS, t0, res)


def test_proxy_down_origin_over_tls(lab, hook, haproxy_down, tag, cname, tmp_path):
    t0 = time.time()
    body = random.Random(7).randbytes(300000)
    res = run_client(lab, tmp_path, cname, "POST", URL + tag, data=body,
                     headers=["Content-Type: application/octet-stream"])
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)
    assert len(lab.origin_log(contains=tag)) == 1
    assert_no_plaintext(lab, API_TLS, t0, res)


@pytest.mark.parametrize("mode", ["error:2", "error:5", "close", "close-head", "reset", "down"])
def test_proxy_fault_replayed_at_origin(lab, hook, testproxy, tag, cname, tmp_path, mode):
    """The test proxy fails the request: x-lunar-error (2, 5), a close after the request,
    a close after its head (mid-request: a 200 KB body), a reset, a reset at accept. The
    program gets the origin's answer over real TLS, and the origin saw the request once,
    with exactly the headers the program sends without the library."""
    body = random.Random(13).randbytes(200000)
    headers = ["Content-Type: application/octet-stream", "X-Fault-Test: %s" % mode]
    base = run_client(lab, tmp_path, cname, "POST", URL + tag + "/baseline", data=body,
                      headers=headers, preload=False)
    assert_ok(base)
    testproxy.set_mode(mode)
    t0 = time.time()
    res = run_client(lab, tmp_path, cname, "POST", URL + tag, data=body, headers=headers,
                     env=TESTPROXY_ENV)
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)
    recs = [r for r in testproxy.origin_log(contains=tag) if r["path"] == tag]
    assert len(recs) == 1, "origin got %d requests, expected the one replay\n%s" % (len(recs), describe(res))
    want = [[k.lower(), v] for k, v in one_echo(base)["headers"]]
    got = [[k.lower(), v] for k, v in recs[0]["headers"]]
    assert got == want, "the origin did not see the program's own request:\n%s\n!=\n%s" % (got, want)
    if mode != "down":  # `down` resets at accept: nothing reaches it
        seen = proxy_log_for(testproxy, tag)
        assert seen and h(seen[0], "x-lunar-scheme") == ["https"] and h(seen[0], "x-lunar-host") == [API], \
            "the request never reached the test proxy as https\n%s\n%s" % (seen, describe(res))
    assert_no_plaintext(lab, API_TLS, t0, res)


def test_retry_after(lab, hook, testproxy, tag, cname, tmp_path):
    testproxy.set_mode("retry:0.3:2")
    t0 = time.time()
    res = run_client(lab, tmp_path, cname, "GET", URL + tag, env=TESTPROXY_ENV)
    elapsed = time.time() - t0
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, via="x-via-testproxy", path=tag)
    log = proxy_log_for(testproxy, tag)
    assert len(log) == 3, "expected 3 requests at the proxy (2 retries), got %d\n%s" % (len(log), describe(res))
    assert all(h(r, "x-lunar-scheme") == ["https"] for r in log)
    assert len({h(r, "x-lunar-req-id")[0] for r in log}) == 1, "req-id changed across retries"
    assert h(log[0], "x-lunar-sequence-id") == [] and h(log[1], "x-lunar-sequence-id") \
        and h(log[2], "x-lunar-sequence-id"), "retries must carry x-lunar-sequence-id"
    assert elapsed >= 0.6, "retries did not wait x-lunar-retry-after"
    assert b"x-lunar-sequence-id" not in res.out.lower()


# ---- per request on one keep-alive connection (node_seq.js) -----------------------------------

class HookSeqRun(Run):
    """test_request_routing's Run (its routes/check helpers read it) for node_seq.js:
    len(steps) https GETs on one keep-alive https.Agent socket, a pause between."""

    def __init__(self, lab, tag, steps, interval, env, tmp_path):  # Run's own argv is http only
        self.lab, self.cname, self.tag, self.n = lab, "node_hook_seq", tag, len(steps)
        self.dir = str(tmp_path)
        self.paths = ["/bytes/%d?t=%s/r%d" % (size(i), tag, i) for i in range(self.n)]
        specs = ["|".join([p] + hs) for p, hs in zip(self.paths, steps)]
        self.argv = [NODE, os.path.join(CLIENT_DIR, "node_seq.js"), URL, str(interval)] + specs
        full = dict(env or {}, **lab.tls_env())
        out = open(os.path.join(self.dir, "client.out"), "wb")
        err = open(os.path.join(self.dir, "client.err"), "wb")
        self.t0 = time.time()
        self.p = lab.spawn(self.argv, env=full, debug=True, stdout=out, stderr=err)
        out.close(), err.close()

    def connections(self):
        a = self.answers()
        return a[max(a)].get("connections") if a else None


def test_allow_false_on_one_request_of_five(lab, hook, tag, tmp_path):
    """`x-lunar-allow: false` on r2 of 5 on one dressed connection: r2 moves to the
    relay (real TLS to the origin, the header removed), r3 comes back to the proxy."""
    steps = [[], [], ["x-lunar-allow: false"], [], []]
    run = HookSeqRun(lab, tag, steps, 0.2, None, tmp_path)
    run.wait()
    rt = routes(lab, run)
    check_tls(lab, run, rt, {0: "proxy", 1: "proxy", 2: "direct", 3: "proxy", 4: "proxy"})


def test_error_then_next_requests_through_proxy(lab, hook, tag, tmp_path, testproxy):
    """x-lunar-error on r0 (replayed at the origin through the relay); r1..r4 through the
    proxy again on the same connection: the socket moved to the relay and back."""
    testproxy.set_mode("error:2")
    run = HookSeqRun(lab, tag, [[] for _ in range(5)], 0.6, TESTPROXY_ENV, tmp_path)
    wait_request(lab, run, 0)
    testproxy.set_mode("pass")
    run.wait()
    rt = routes(lab, run, tproxy=True)
    assert rt[0]["tp"] == ["error"], rt[0]
    check_tls(lab, run, rt, {0: "direct", 1: "proxy", 2: "proxy", 3: "proxy", 4: "proxy"})


def test_cooldown_entered_and_left(lab, hook, tag, tmp_path, testproxy):
    """LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS=2, LUNAR_EXIT_COOLDOWN_AFTER_SEC=2, the test
    proxy answering x-lunar-error: 2, then passing from r1's replay on: r0 and r1 try the
    proxy and are replayed at the origin; the cooldown's requests go to the origin (over
    the relay's real TLS) without trying the proxy; later ones through the proxy. One
    program connection throughout."""
    testproxy.set_mode("error:2")
    run = HookSeqRun(lab, tag, [[] for _ in range(14)], 0.5, COOLDOWN_ENV, tmp_path)
    rt, want = cooldown_routes(lab, run, testproxy)
    check_tls(lab, run, rt, want)


# ==== certificates the program rejects =============================================================

@pytest.mark.parametrize("route", ["haproxy", "testproxy-error", "proxy-down"])
@pytest.mark.parametrize("host", ["untrusted.example.test", "wrongname.example.test"])
def test_untrusted_origin_is_the_runtimes_error(lab, hook, tag, route, host):
    """An origin whose certificate the program rejects (a CA it does not trust; a name
    the certificate lacks), reached through the relay because the proxy refused it (503
    x-lunar-error: 2 from HAProxy, which verifies too), failed it (the test proxy), or was
    down: the program gets Node's own error, the same code and message as without the
    library, no body; nothing reached the origin, as a request or as plaintext."""
    url = "https://%s%s" % (host, tag)
    server = UNTRUSTED_TLS if host.startswith("untrusted") else API_TLS
    base = run_node(lab, "node_hook_get.js", [url], preload=False)
    want = json_lines(base)
    assert base.rc != 0 and len(want) == 1 and want[0].get("error", {}).get("code"), describe(base)
    env = None
    lab.start_haproxy()
    if route == "testproxy-error":
        lab.start_testproxy()
        lab.set_mode("error:2")
        lab.testproxy_reset_log()
        env = TESTPROXY_ENV
    elif route == "proxy-down":
        lab.stop_haproxy()
    t0 = time.time()
    try:
        res = run_node(lab, "node_hook_get.js", [url], env=env)
    finally:
        if route == "testproxy-error":
            lab.set_mode("pass")
        lab.start_haproxy()
    assert res.rc != 0, "the program accepted a certificate it rejects\n" + describe(res)
    assert json_lines(res) == want, "not the runtime's own error (%s without the library)\n%s" % (
        want, describe(res))
    assert lab.origin_log(contains=tag) == [], "a request reached the origin"
    assert_no_plaintext(lab, server, t0, res)
    if route == "testproxy-error":
        seen = proxy_log_for(lab, tag)
        assert seen and h(seen[0], "x-lunar-host") == [host] and h(seen[0], "x-lunar-scheme") == ["https"], \
            "the request never reached the test proxy\n" + describe(res)
    if route == "haproxy":
        assert tag in lab.haproxy_log(), "the request never reached HAProxy\n" + describe(res)


def test_untrusted_origin_not_verified_by_choice(lab, hook, haproxy_up, tag):
    """rejectUnauthorized: false is the program's choice: the relay keeps it (answer from
    the untrusted origin over TLS, after HAProxy refused it)."""
    res = run_node(lab, "node_hook_get.js", ["https://untrusted.example.test" + tag, "--no-verify"])
    assert_ok(res)
    e = json.loads(json_lines(res)[0]["body"])
    assert (e["scheme"], e["server"], e["sni"], e["path"]) == \
        ("https", UNTRUSTED_TLS, "untrusted.example.test", tag), describe(res)


# ==== the program's environment, a child node ======================================================

@pytest.mark.parametrize("child", ["--child", "--child-inherits"])
@pytest.mark.parametrize("user_opts", [None, "--max-old-space-size=100"], ids=["no-NODE_OPTIONS", "user-NODE_OPTIONS"])
def test_environment_and_child_node(lab, hook, haproxy_up, tag, user_opts, child):
    """The program sees NODE_OPTIONS as the user set it (or unset) and no LUNAR_NODE_HOOK,
    its options still apply (the heap limit), and its https goes through the proxy. A
    child `node` started without LD_PRELOAD but with the program's environment
    (--child), or even with the variables the library sets for a node process
    (--child-inherits: NODE_OPTIONS --require'ing the hook, LUNAR_NODE_HOOK naming the
    parent's pid), stays inert: tls.connect untouched, the user's NODE_OPTIONS, no
    LUNAR_NODE_HOOK, its https straight to the origin over its own TLS."""
    res = run_node(lab, "node_hook_env.js", [URL + tag, child, hook],
                   env={"NODE_OPTIONS": user_opts})
    assert_ok(res)
    lines = json_lines(res)
    reports = [x["report"] for x in lines if "report" in x]
    es = [x for x in lines if "server" in x]
    assert [r["who"] for r in reports] == ["parent", "child"] and len(es) == 2, describe(res)
    for r in reports:
        assert (r["node_options"], r["hook_var"]) == (user_opts, None), "%s sees %s\n%s" % (
            r["who"], r, describe(res))
        if user_opts:
            assert r["heap_limit_mb"] < 200, "the user's --max-old-space-size=100 lost: %s" % r
    assert reports[0]["patched"] is True, "the hook is not active in the program\n" + describe(res)
    assert reports[1]["patched"] is False, "the child without the library is not inert\n" + describe(res)
    assert_proxied_tls(es[0], res, path=tag + "/parent")
    assert_direct_tls(es[1], res, path=tag + "/child")


def test_library_under_a_type_module_package(lab, hook, haproxy_up, tag, tmp_path):
    """The library and its hook installed below a package.json saying "type": "module"
    (an image whose application sits at /): Node then evaluates lunar-node-hook.cjs as an
    ES module. The program must still start, and its https still go through the proxy."""
    app = tmp_path / "app"
    (app / "lib").mkdir(parents=True)
    (app / "package.json").write_text('{"type": "module"}\n')
    lib = app / "lib" / "liblunar_intercept.so"
    lib.write_bytes(open(lab.lib, "rb").read())
    (app / "lib" / "lunar-node-hook.cjs").write_bytes(open(hook, "rb").read())
    res = run_node(lab, "node_https.js", ["GET", URL + tag], env={"LD_PRELOAD": str(lib)})
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, path=tag)


# ==== a relay that cannot be reached ==============================================================

# A marker with this process's token naming a relay port nothing listens on (port 1): what a
# dead relay looks like to the library. The program must get a reset, and nothing of the
# request may reach the origin.
DEAD_RELAY = r"""
const net = require('net');
const data = require('worker_threads').getEnvironmentData('lunar-node-hook');
const token = data.split(' ')[2];
const s = net.connect(443, 'api.example.test', () => {
  s.write('LUNAR-HOOK/1 ' + token + ' 1 1\r\n' +
          'GET ' + process.argv[1] + ' HTTP/1.1\r\nHost: api.example.test\r\n\r\n');
});
let got = 0;
s.on('data', (d) => { got += d.length; });
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code, got })); process.exit(0); });
s.on('close', () => { console.log(JSON.stringify({ error: null, got })); process.exit(0); });
"""


@pytest.mark.parametrize("route", ["proxy_down", "x-lunar-error"])
def test_unreachable_relay_is_a_reset_not_a_leak(lab, hook, testproxy, haproxy_up, tag, route):
    """The relay named by the marker cannot be reached: with the proxy down (the socket was
    at the origin when the marker came) and after x-lunar-error (a replay to the origin),
    the program's connection fails (reset; after a replay that could not connect, refused,
    as a replay of plain http to an origin that refuses ends), and the
    origin saw nothing of the request (no request logged, no plaintext met by its TLS)."""
    if route == "proxy_down":
        env = {"LUNAR_PROXY_HOST": "proxy.lunar.test:8009", "LUNAR_HANDSHAKE_PORT": "8089"}
    else:
        testproxy.set_mode("error:2")
        env = TESTPROXY_ENV
    t0 = time.time()
    res = lab.run([NODE, "-e", DEAD_RELAY, tag], env=dict(lab.tls_env(), **env), debug=True,
                  timeout=30)
    assert res.rc == 0, describe(res)
    out = json_lines(res)
    failed = ("ECONNRESET", "EPIPE") if route == "proxy_down" else ("ECONNREFUSED",)
    assert out and out[0]["error"] in failed and out[0]["got"] == 0, describe(res)
    assert lab.origin_log(contains=tag) == [], describe(res)
    assert_no_plaintext(lab, API_TLS, t0, res)
    if route == "x-lunar-error":
        seen = proxy_log_for(testproxy, tag)
        assert seen and h(seen[0], "x-lunar-scheme") == ["https"], describe(res)


# A request to an origin whose address is up with nothing listening: the error Node's
# client reports.
DOWN_ORIGIN = r"""
const mod = require(process.argv[1].startsWith('https') ? 'https' : 'http');
const req = mod.get(process.argv[1], res => console.log('status', res.statusCode));
req.on('error', e => console.log('error', e.code));
"""


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_refusing_origin_is_a_refusal(lab, hook, haproxy_up, scheme):
    """Proxy up, origin refusing (down.example.test): the proxy's error is hidden, the
    replay's connect is refused, and Node reports ECONNREFUSED, as without the library
    (before: https ENOTCONN, http ECONNRESET, from the socket the failed move left)."""
    url = "%s://down.example.test/x" % scheme
    without = lab.run([NODE, "-e", DOWN_ORIGIN, url], env=lab.tls_env(None), preload=False,
                      timeout=30)
    res = lab.run([NODE, "-e", DOWN_ORIGIN, url], env=lab.tls_env(None), debug=True, timeout=30)
    assert without.text_out.strip() == "error ECONNREFUSED", describe(without)
    assert res.text_out.strip() == "error ECONNREFUSED", describe(res)
