"""Shared fixtures for the end-to-end tests: the lab, the clients, assertions.

Run with /usr/bin/python3 -m pytest tests/e2e (scripts/run-e2e.sh). Everything
runs inside a network namespace made for the session (tests/lab/lab.py).
"""
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLIENT_DIR = os.path.join(HERE, "clients")
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

import lab as labmod  # noqa: E402

PY = "/usr/bin/python3"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def cargo_version():
    with open(os.path.join(REPO, "Cargo.toml")) as f:
        in_pkg = False
        for line in f:
            s = line.strip()
            if s.startswith("["):
                in_pkg = s == "[package]"
            elif in_pkg and s.startswith("version"):
                return s.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("no version in Cargo.toml")


VERSION = cargo_version()
INTERCEPTOR = "lunar-preload-interceptor/" + VERSION


# ---- the lab -------------------------------------------------------------------

@pytest.fixture(scope="session")
def lab():
    name = "lunar-e2e-%d" % os.getpid()
    lb = labmod.Lab(name)
    lb.install_cleanup()
    try:
        lb.up()
        yield lb
    finally:
        lb.down()


@pytest.fixture
def testproxy(lab):
    """The lab's scriptable test proxy in pass mode with an empty log; pass again after.
    (test_c_programs.py and test_recovery.py have variants of their own.)"""
    lab.start_testproxy()
    lab.set_mode("pass")
    lab.testproxy_reset_log()
    try:
        yield lab
    finally:
        lab.set_mode("pass")


@pytest.fixture
def haproxy_restored(lab):
    """For tests that stop/start HAProxy themselves: it is up before and after."""
    lab.start_haproxy()
    try:
        yield lab
    finally:
        lab.start_haproxy()


@pytest.fixture(scope="session")
def test_build_lib():
    """The library's test build (`--features small-fd-table,panic-probe,race-probe`, see
    Cargo.toml): fd-table chunks of 1024 fds; a connect to port 9 panics inside the hook;
    a read of 4093 bytes pauses between the read path's checks and the read; a write of
    4093 bytes pauses its move right after the disconnect, one of 4092 bytes the resend of a
    recovery's helper thread, one of 4091 bytes refuses that thread, one of 4090
    bytes makes it panic; a read of 4094 bytes that met the peer's end pauses before
    it is judged (src/race_probe.rs). From
    LUNAR_LIB_TEST_BUILD, or built here into target/test-build."""
    given = os.environ.get("LUNAR_LIB_TEST_BUILD")
    if given:
        return given
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if not os.path.exists(cargo):
        pytest.skip("no cargo to build the library's test build")
    target = os.path.join(REPO, "target", "test-build")
    r = subprocess.run([cargo, "build", "--release", "--lib", "--features",
                        "small-fd-table,panic-probe,race-probe",
                        "--target-dir", target], cwd=REPO, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert r.returncode == 0, "cargo build of the test build:\n" + r.stdout.decode()
    return os.path.join(target, "release", "liblunar_intercept.so")


# The lab's test proxy, with every fault tried (no cooldown within a module).
TESTPROXY_FAULTS_ENV = {"LUNAR_PROXY_HOST": "127.0.0.1:%d" % labmod.TESTPROXY_TRAFFIC,
                        "LUNAR_HANDSHAKE_PORT": str(labmod.TESTPROXY_HANDSHAKE),
                        "LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS": "1000"}


@pytest.fixture
def need_lib(lab):
    if not os.path.exists(lab.lib):
        pytest.fail("library not built: %s (make build)" % lab.lib)
    return lab.lib


@pytest.fixture
def tag(request):
    """A unique path prefix for this test's requests: /t/<test>/<uuid>."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    return "/t/%s/%s" % (name, uuid.uuid4().hex[:10])


# ---- clients -----------------------------------------------------------------------

CLIENTS = ["curl", "wget", "py_httpclient", "py_urllib", "py_asyncio", "node_http",
           "node_fetch", "java_httpclient", "java_urlconnection", "perl_tiny", "ruby_nethttp",
           "tcl_http"]
JAVA_OPTS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-Xss512k"]

# what a client cannot do at all (scenario -> reason)
CANNOT = {
    ("wget", "chunked"): "wget cannot send a chunked request body",
    ("py_urllib", "keepalive"): "urllib.request opens a new connection for every request",
    ("tcl_http", "chunked"): "Tcl's http package sends a body with its length only",
}


@pytest.fixture(scope="session")
def java_classes(tmp_path_factory):
    """Compile the Java clients once per session (javac, not in the namespace)."""
    if not shutil.which("javac"):
        return None
    out = str(tmp_path_factory.mktemp("java-clients"))
    srcs = [os.path.join(CLIENT_DIR, f) for f in ("JavaHttpClient.java", "JavaUrlConnection.java")]
    r = subprocess.run(["javac", "-d", out] + srcs, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("javac failed:\n" + r.stdout.decode())
    return out


class Client:
    def __init__(self, name, lab, java_classes, tmpdir):
        self.name = name
        self.lab = lab
        self.java_classes = java_classes
        self.tmpdir = tmpdir

    def skip_if_cannot(self, scenario):
        reason = CANNOT.get((self.name, scenario))
        if reason:
            pytest.skip(reason)

    def argv(self, method, url, data_file=None, headers=(), repeat=1, chunked=False):
        n = self.name
        if n == "curl":
            base = [os.path.join(CLIENT_DIR, "curl.sh")]
        elif n == "wget":
            base = [os.path.join(CLIENT_DIR, "wget.sh")]
        elif n in ("py_httpclient", "py_urllib", "py_asyncio"):
            base = [PY, os.path.join(CLIENT_DIR, n + ".py")]
        elif n in ("node_http", "node_fetch"):
            base = ["/usr/bin/node", os.path.join(CLIENT_DIR, n + ".js")]
        elif n.startswith("java_"):
            if not self.java_classes:
                pytest.skip("no javac")
            cls = "JavaHttpClient" if n == "java_httpclient" else "JavaUrlConnection"
            base = ["java"] + JAVA_OPTS + ["-cp", self.java_classes, cls]
        elif n == "perl_tiny":
            base = ["/usr/bin/perl", os.path.join(CLIENT_DIR, "perl_tiny.pl")]
        elif n == "ruby_nethttp":
            base = ["/usr/bin/ruby", os.path.join(CLIENT_DIR, "ruby_nethttp.rb")]
        elif n == "tcl_http":
            base = ["/usr/bin/tclsh", os.path.join(CLIENT_DIR, "tcl_http.tcl")]
        else:
            raise ValueError(n)
        argv = base + [method, url]
        if data_file:
            argv += ["--data-file", data_file]
        for h in headers:
            argv += ["--header", h]
        if repeat != 1:
            argv += ["--repeat", str(repeat)]
        if chunked:
            argv.append("--chunked")
        return argv

    def run(self, method, url, data=None, headers=(), repeat=1, chunked=False, env=None,
            preload=True, proxy=True, debug=True, timeout=60):
        data_file = None
        if data is not None:
            data_file = os.path.join(self.tmpdir, "body-%s.bin" % uuid.uuid4().hex[:8])
            with open(data_file, "wb") as f:
                f.write(data)
        argv = self.argv(method, url, data_file, headers, repeat, chunked)
        return self.lab.run(argv, env=env, preload=preload, proxy=proxy, debug=debug, timeout=timeout)


@pytest.fixture(params=CLIENTS)
def client(request, lab, java_classes, tmp_path):
    return Client(request.param, lab, java_classes, str(tmp_path))


def make_client(name, lab, java_classes, tmpdir):
    return Client(name, lab, java_classes, tmpdir)


# ---- reading what arrived ---------------------------------------------------------------

@contextlib.contextmanager
def listening(lab, argv, env, listen, stderr=None):
    """A server a test runs as the library's client (nginx, HAProxy): started under the
    library with `env`, debug lines on, until it listens on `listen` (ip, port); stopped
    by its process group at the end, and its port seen closed."""
    p = lab.spawn(argv, env=env, debug=True, stderr=stderr)
    try:
        lab.wait_listen(listen[0], listen[1], proc=p)
        yield p
    finally:
        lab.stop(p)
        lab.wait_listen(listen[0], listen[1], up=False)


def echoes(res):
    """The origin echo JSON objects in a client's stdout (one per line)."""
    out = []
    for line in res.out.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError("client stdout is not origin JSON: %r\n%s" % (line[:300], describe(res)))
    return out


def one_echo(res):
    e = echoes(res)
    assert len(e) == 1, "expected one response body, got %d\n%s" % (len(e), describe(res))
    return e[0]


def hdrs(echo, name):
    """Values of header `name` (case-insensitive) the origin received, in order."""
    n = name.lower()
    return [v for k, v in echo["headers"] if k.lower() == n]


def hdr(echo, name):
    v = hdrs(echo, name)
    return v[0] if v else None


def describe(res, lab=None):
    s = "argv: %s\nrc: %s\nstdout: %r\nstderr:\n%s" % (
        " ".join(res.argv or []), res.rc, res.out[:1500], res.text_err[-6000:])
    return s


def assert_ok(res):
    assert res.rc == 0, "client failed\n" + describe(res)


def assert_proxied(echo, res, lunar_host, managed_tenant=None, origin=None, path=None):
    """The request went through HAProxy with every header right."""
    ctx = "\norigin saw: %s\n%s" % (json.dumps(echo["headers"]), describe(res))
    assert hdr(echo, "x-via-haproxy") == "1", "request did not go through the proxy" + ctx
    assert hdr(echo, "x-seen-lunar-host") == lunar_host, "x-lunar-host" + ctx
    assert hdr(echo, "x-seen-lunar-scheme") == "http", "x-lunar-scheme" + ctx
    assert hdr(echo, "x-seen-lunar-interceptor") == INTERCEPTOR, "x-lunar-interceptor" + ctx
    rid = hdr(echo, "x-seen-lunar-req-id")
    assert rid is not None and UUID4.match(rid), "x-lunar-req-id not a UUID v4: %r%s" % (rid, ctx)
    counts = dict(kv.split("=") for kv in hdr(echo, "x-seen-lunar-counts").split(","))
    want = {"host": "1", "scheme": "1", "interceptor": "1", "req-id": "1",
            "tenant-id": "1" if managed_tenant else "0", "allow": "0", "sequence-id": "0"}
    assert counts == want, "x-lunar-* header counts at the proxy %s != %s%s" % (counts, want, ctx)
    if managed_tenant:
        assert hdr(echo, "x-seen-lunar-tenant-id") == managed_tenant, "tenant" + ctx
    else:
        assert hdr(echo, "x-seen-lunar-tenant-id") is None, "tenant header while unmanaged" + ctx
    assert not [k for k, _ in echo["headers"] if k.lower().startswith("x-lunar-")], \
        "x-lunar-* header reached the origin" + ctx
    assert hdrs(echo, "host") == [lunar_host], "Host at origin" + ctx
    if origin:
        assert echo["server"] == origin, "wrong origin" + ctx
    if path:
        assert echo["path"] == path, "path" + ctx
    return rid


def assert_direct(echo, res, origin=None, path=None):
    """The request reached the origin without any proxy and without x-lunar-* headers."""
    ctx = "\norigin saw: %s\n%s" % (json.dumps(echo["headers"]), describe(res))
    assert hdr(echo, "x-via-haproxy") is None and hdr(echo, "x-via-testproxy") is None, \
        "request went through a proxy, expected direct" + ctx
    bad = [k for k, _ in echo["headers"] if k.lower().startswith(("x-lunar-", "x-seen-"))]
    assert not bad, "unexpected headers at origin: %s%s" % (bad, ctx)
    if origin:
        assert echo["server"] == origin, "wrong origin" + ctx
    if path:
        assert echo["path"] == path, "path" + ctx


def assert_via_testproxy(echo, scheme, body, ctx):
    """The request came through the test proxy with Lunar's headers for api.example.test
    over `scheme`, its body whole."""
    assert hdr(echo, "x-via-testproxy") == "1", ctx
    assert hdr(echo, "x-seen-lunar-host") == "api.example.test", ctx
    assert hdr(echo, "x-seen-lunar-scheme") == scheme, ctx
    assert hdr(echo, "x-seen-lunar-interceptor").startswith("lunar-preload-interceptor/"), ctx
    assert echo["body_sha256"] == sha256(body), ctx


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def debug_lines(res, word=None):
    """The library's log lines on stderr ([lunar] ...), optionally only those
    containing `word`."""
    lines = [ln for ln in res.text_err.splitlines() if "lunar" in ln.lower()]
    if word:
        lines = [ln for ln in lines if word in ln]
    return lines


# ---- tests that need https diversion (issue 5) -------------------------------------------

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs_tls_divert: what https diversion must do (issue 5); "
        "deselect with -m 'not needs_tls_divert'")
