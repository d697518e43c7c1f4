"""Issue 12: the verification of the proxy's TLS by `lunar-intercept doctor`.

With LUNAR_PROXY_SUPPORT_TLS=1 the library talks TLS to Lunar Proxy: it verifies the
proxy's certificate against the system's CA store plus the file LUNAR_PROXY_CA_FILE
names, and the host of LUNAR_PROXY_HOST against it (a DNS name against a DNS SAN, an IP
literal against an IP SAN), sends its handshake (GET /handshake) over TLS on the
handshake port, and carries diverted requests over TLS to the traffic port
(test_proxy_tls_traffic.py). `lunar-intercept doctor` (target/release/lunar-intercept,
run inside the lab with preload=False, as in test_command.py) says how that went, in
these lines of its report:

    PASS  proxy traffic port: ...                         (the TLS traffic port, 8400)
    PASS  proxy TLS: proxy.lunar.test:8443 verified ...
    FAIL  proxy TLS: ... certificate verify failed: hostname mismatch ...
    PASS  handshake: GET /handshake on https://... managed: false ...
    WARN  configuration: LUNAR_PROXY_CA_FILE ...          (a file that cannot be read)

and exits 0 when nothing fails: with everything good (the TLS traffic port, the good
TLS handshake port, the lab CA) the report has no FAIL (diverting over TLS is built:
the former "FAIL  TLS to the proxy: ... not built" line is gone), else 1.

The lab's side (tests/lab/lab.py): HAProxy on 127.0.0.1 (proxy.lunar.test in the
namespace's hosts file) carries traffic over TLS on 8400 (LUNAR_PROXY_HOST here:
proxy.lunar.test:8400) and answers GET /handshake with {"managed": false} over TLS on
8443 (a certificate from the lab CA for DNS:proxy.lunar.test and IP:127.0.0.1), 8444
(DNS:wrong.lunar.test only), 8445 (expired in 2021), 8446 (from the untrusted CA);
8401-8403 are TLS traffic ports with those bad certificates; 8081 is its plain
handshake port and 8000 its plain traffic port (plain HTTP where TLS is expected); and
two listeners a test starts (lab.start_listener): 8447 resets the connection after the
ClientHello's first bytes, 8448 accepts and never answers. The system's CA store does
not hold the lab CA, so no SSL_CERT_FILE/SSL_CERT_DIR is passed: only
LUNAR_PROXY_CA_FILE can make the proxy trusted.

The test_lab_* tests check the lab's side alone (no library), so that a failure can be
told apart from the library's.
"""
import json
import os
import socket
import ssl
import time

import pytest

from conftest import REPO, assert_ok, assert_proxied, describe, hdr, labmod, one_echo

COMMAND = os.path.join(REPO, "target", "release", "lunar-intercept")
API = "203.0.113.10:80"
PROXY_NAME = labmod.PROXY_NAME                      # proxy.lunar.test = 127.0.0.1
# LUNAR_PROXY_HOST: the TLS traffic port (a doctor with TLS asked for checks TLS there)
PROXY_BY_NAME = "%s:%d" % (PROXY_NAME, labmod.HAPROXY_TLS_TRAFFIC)
PROXY_BY_IP = "127.0.0.1:%d" % labmod.HAPROXY_TLS_TRAFFIC
GOOD = labmod.HAPROXY_TLS_HANDSHAKE                 # 8443
WRONG_NAME = labmod.HAPROXY_TLS_HANDSHAKE_WRONG_NAME  # 8444
EXPIRED = labmod.HAPROXY_TLS_HANDSHAKE_EXPIRED      # 8445
UNKNOWN_CA = labmod.HAPROXY_TLS_HANDSHAKE_UNKNOWN_CA  # 8446
PLAIN = labmod.HAPROXY_HANDSHAKE                    # 8081
RESET = labmod.TLS_RESET_PROXY                      # 8447
SILENT = labmod.SILENT_PROXY                        # 8448
# HAProxy's frontend for each TLS handshake port (its name in haproxy.log; followed by
# "~" on the line of a request that came over TLS)
FRONTEND = {GOOD: "lunar_handshake_tls", WRONG_NAME: "lunar_handshake_tls_wrong_name",
            EXPIRED: "lunar_handshake_tls_expired", UNKNOWN_CA: "lunar_handshake_tls_unknown_ca"}
LAB_CA = object()  # doctor(): LUNAR_PROXY_CA_FILE = the lab's CA file


@pytest.fixture
def command(need_lib):
    if not os.path.exists(COMMAND):
        pytest.fail("command not built: %s (make build)" % COMMAND)
    return COMMAND


@pytest.fixture
def haproxy_up(lab):
    lab.start_haproxy()  # another test may have left it down
    return lab


@pytest.fixture(scope="module")
def listeners(lab):
    """The reset (8447) and silent (8448) listeners, for this module only."""
    lab.start_listener("reset")
    lab.start_listener("silent")
    try:
        yield lab
    finally:
        lab.stop_listener("reset")
        lab.stop_listener("silent")


def doctor(lab, port, host=PROXY_BY_NAME, ca=LAB_CA, env=None, timeout=60):
    """lunar-intercept doctor with TLS to the proxy asked for, the handshake on `port`;
    the proxy trusted through LUNAR_PROXY_CA_FILE=`ca` (None: not set), nothing else
    (no SSL_CERT_FILE/SSL_CERT_DIR: the system's store only)."""
    full = {"LUNAR_PROXY_SUPPORT_TLS": "1", "LUNAR_PROXY_HOST": host,
            "LUNAR_HANDSHAKE_PORT": str(port),
            "LUNAR_PROXY_CA_FILE": lab.ca_file if ca is LAB_CA else ca,
            "SSL_CERT_FILE": None, "SSL_CERT_DIR": None}
    full.update(env or {})
    return lab.run([COMMAND, "doctor"], preload=False, env=full, timeout=timeout)


def report_lines(res, prefix):
    return [line for line in res.out.decode().splitlines() if line.startswith(prefix)]


def report_line(res, prefix):
    lines = report_lines(res, prefix)
    assert len(lines) == 1, "expected one line starting %r\n%s" % (prefix, describe(res))
    return lines[0]


def assert_doctor_passes(res):
    """Nothing fails (no FAIL line, nothing said to be not built): exit status 0."""
    text = res.out.decode()
    assert not report_lines(res, "FAIL"), describe(res)
    assert "not built" not in text, describe(res)
    assert res.rc == 0, describe(res)


def assert_doctor_fails(res, prefixes, *words):
    """One FAIL line starting with one of `prefixes` and holding every word; no
    handshake answered; exit status 1. Returns the line."""
    lines = [ln for p in prefixes for ln in report_lines(res, p)]
    assert len(lines) == 1, "expected one line starting %s\n%s" % (
        " or ".join(map(repr, prefixes)), describe(res))
    line = lines[0]
    for w in words:
        assert w in line, "%r not in %r\n%s" % (w, line, describe(res))
    assert not report_lines(res, "PASS  handshake"), describe(res)
    assert res.rc == 1, describe(res)
    return line


def assert_proxy_tls_fails(res, *words):
    """The handshake port's TLS fails (the traffic port's passed): FAIL  proxy TLS."""
    report_line(res, "PASS  proxy traffic port: ")
    return assert_doctor_fails(res, ("FAIL  proxy TLS: ",), *words)


# Without the lab CA the first TLS to fail may be the traffic port's (doctor checks it
# first) or the handshake port's: either line says why.
ANY_TLS_FAIL = ("FAIL  proxy traffic port: ", "FAIL  proxy TLS: ")


def new_log(lab, before, settle=0.3):
    """haproxy.log lines written since `before` (its text then). HAProxy writes a line
    when a connection ends, maybe just after the client exited: settle first."""
    time.sleep(settle)
    return lab.haproxy_log()[len(before):].splitlines()


def tls_requests(lines, port):
    """Requests that reached the TLS handshake frontend of `port` over TLS."""
    return [ln for ln in lines if " %s~ " % FRONTEND[port] in ln]


# ---- the lab's side alone (no library) ----------------------------------------------

def tls_connect(lab, port, server_hostname=PROXY_NAME, ca=None, timeout=5):
    """A TLS handshake from inside the namespace to 127.0.0.1:port, verified with `ca`
    (default: the lab CA; "system": the system's store) and server_hostname (an IP
    literal: against the IP SANs). Returns (TLS version, ALPN), or raises."""
    if ca == "system":
        ctx = ssl.create_default_context()
    else:
        ctx = ssl.create_default_context(cafile=ca or lab.ca_file)
    ctx.set_alpn_protocols(["http/1.1"])

    def do():
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            with ctx.wrap_socket(s, server_hostname=server_hostname) as t:
                return t.version(), t.selected_alpn_protocol()
    return lab.in_ns(do)


@pytest.mark.parametrize("port,name,code", [
    (GOOD, PROXY_NAME, None), (GOOD, "127.0.0.1", None),
    (WRONG_NAME, PROXY_NAME, 62),   # X509_V_ERR_HOSTNAME_MISMATCH: hostname mismatch
    (WRONG_NAME, "127.0.0.1", 64),  # X509_V_ERR_IP_ADDRESS_MISMATCH: IP address mismatch
    (EXPIRED, PROXY_NAME, 10),      # X509_V_ERR_CERT_HAS_EXPIRED: certificate has expired
    (UNKNOWN_CA, PROXY_NAME, 20),   # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
], ids=["good", "good-ip", "wrong-name", "wrong-name-ip", "expired", "unknown-ca"])
def test_lab_proxy_certificates(haproxy_up, port, name, code):
    """What OpenSSL (Python's ssl) says of each TLS handshake port of the lab's HAProxy."""
    lab = haproxy_up
    if code is None:
        assert tls_connect(lab, port, name)[1] == "http/1.1"
        return
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        tls_connect(lab, port, name)
    assert e.value.verify_code == code, e.value


def test_lab_proxy_tls_handshake_and_traffic(haproxy_up, tag):
    """GET /handshake over TLS on 8443 is {"managed": false}; the TLS traffic port 8400
    is the plain one's frontend (lunar_traffic): it routes on x-lunar-host, and the
    request is told as TLS by its log line ("lunar_traffic~") and the x-seen-proxy-tls
    header the origin echoes. The system's store alone does not trust the proxy."""
    lab = haproxy_up
    before = lab.haproxy_log()
    st, _, body = lab.https("GET", "127.0.0.1", GOOD, "/handshake", server_hostname=PROXY_NAME)
    assert (st, json.loads(body)) == (200, {"managed": False})
    st, _, body = lab.https("GET", "127.0.0.1", labmod.HAPROXY_TLS_TRAFFIC, tag, headers={
        "Host": PROXY_NAME, "x-lunar-host": "api.example.test", "x-lunar-scheme": "http"})
    assert st == 200, body
    e = json.loads(body)
    assert e["server"] == API and e["scheme"] == "http", e
    assert dict(e["headers"]).get("x-seen-proxy-tls", "").startswith("TLSv1."), e
    assert dict(e["headers"]).get("x-via-haproxy") == "1", e
    lines = new_log(lab, before)
    assert [ln for ln in lines if " lunar_traffic~ " in ln and tag in ln], lines
    assert tls_requests(lines, GOOD) and "GET /handshake" in tls_requests(lines, GOOD)[0], lines
    # the plain traffic port: no x-seen-proxy-tls, "lunar_traffic" without "~"
    st, _, body = lab.http("GET", "127.0.0.1", labmod.HAPROXY_TRAFFIC, tag + "/plain", headers={
        "x-lunar-host": "api.example.test", "x-lunar-scheme": "http"})
    assert st == 200 and "x-seen-proxy-tls" not in dict(json.loads(body)["headers"]), body
    assert [ln for ln in new_log(lab, before) if " lunar_traffic " in ln and tag + "/plain" in ln]
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        tls_connect(lab, GOOD, ca="system")
    assert e.value.verify_code == 20, e.value


def test_lab_misbehaving_listeners(listeners, haproxy_up):
    """8447: a reset in the TLS handshake, after the ClientHello arrived; 8448: no
    answer at all; 8081: plain HTTP where TLS is expected."""
    lab = listeners
    before = len(lab.listener_log())
    with pytest.raises((ConnectionResetError, ssl.SSLError)):
        tls_connect(lab, RESET)
    t0 = time.time()
    with pytest.raises((socket.timeout, TimeoutError)):
        tls_connect(lab, SILENT, timeout=0.3)
    assert time.time() - t0 < 2
    with pytest.raises(ssl.SSLError) as e:
        tls_connect(lab, PLAIN)
    assert "WRONG_VERSION_NUMBER" in str(e.value) or "packet length too long" in str(e.value), e.value
    recs = wait_listener_log(lab, before, 2)
    assert sorted(r["listener"] for r in recs) == ["reset", "silent"], recs
    assert all(r["client_hello"] for r in recs), recs


def wait_listener_log(lab, before, count, timeout=3.0):
    """The listeners' records after the first `before`, once there are `count` (the
    silent one writes its record when the peer has closed)."""
    deadline = time.time() + timeout
    while True:
        recs = lab.listener_log()[before:]
        if len(recs) >= count or time.time() > deadline:
            return recs
        time.sleep(0.05)


# ---- doctor ---------------------------------------------------------------------------

def test_doctor_verifies_the_proxy(haproxy_up, command):
    """The lab CA through LUNAR_PROXY_CA_FILE, the proxy by name: verified, and the
    handshake answered over TLS (HAProxy logs it on its TLS frontend)."""
    lab = haproxy_up
    before = lab.haproxy_log()
    res = doctor(lab, GOOD)
    line = report_line(res, "PASS  proxy TLS: ")
    assert line.startswith("PASS  proxy TLS: %s:%d verified" % (PROXY_NAME, GOOD)), describe(res)
    hs = report_line(res, "PASS  handshake: ")
    assert hs.startswith("PASS  handshake: GET /handshake on https://"), describe(res)
    assert "managed: false" in hs, describe(res)
    assert not report_lines(res, "WARN  configuration: LUNAR_PROXY_CA_FILE"), describe(res)
    assert report_line(res, "PASS  proxy traffic port: "), describe(res)
    assert_doctor_passes(res)
    # one GET /handshake, over TLS (the verification may be a connection of its own,
    # logged as "<BADREQ>": a TLS session closed without a request)
    lines = new_log(lab, before)
    reqs = [ln for ln in tls_requests(lines, GOOD) if '"GET /handshake ' in ln]
    assert len(reqs) == 1, lines
    assert not [ln for ln in lines if " lunar_handshake " in ln], lines  # plain 8081


def test_doctor_verifies_an_ip_literal_against_the_ip_san(haproxy_up, command):
    res = doctor(haproxy_up, GOOD, host=PROXY_BY_IP)
    line = report_line(res, "PASS  proxy TLS: ")
    assert line.startswith("PASS  proxy TLS: 127.0.0.1:%d verified" % GOOD), describe(res)
    assert report_line(res, "PASS  handshake: ").startswith(
        "PASS  handshake: GET /handshake on https://"), describe(res)
    assert_doctor_passes(res)


@pytest.mark.parametrize("port,host,reason", [
    (WRONG_NAME, PROXY_BY_NAME, "certificate verify failed: hostname mismatch"),
    (EXPIRED, PROXY_BY_NAME, "certificate verify failed: certificate has expired"),
    (UNKNOWN_CA, PROXY_BY_NAME, "certificate verify failed: unable to get local issuer certificate"),
    (WRONG_NAME, PROXY_BY_IP, "IP address mismatch"),
], ids=["wrong-name", "expired", "unknown-ca", "wrong-name-ip"])
def test_doctor_rejects_a_bad_certificate(haproxy_up, command, port, host, reason):
    """Each bad certificate is a FAIL that says why; no request is made over the
    session (HAProxy's TLS frontend logs no GET /handshake)."""
    lab = haproxy_up
    before = lab.haproxy_log()
    assert_proxy_tls_fails(doctor(lab, port, host=host), reason)
    reqs = [ln for ln in tls_requests(new_log(lab, before), port) if "/handshake" in ln]
    assert not reqs, reqs


def test_doctor_without_the_ca_file_trusts_the_system_store_only(haproxy_up, command):
    """The system's store does not hold the lab CA: the good certificate is not trusted."""
    assert_doctor_fails(doctor(haproxy_up, GOOD, ca=None), ANY_TLS_FAIL,
                        "unable to get local issuer certificate")


def test_doctor_warns_of_a_ca_file_it_cannot_read(haproxy_up, command):
    """LUNAR_PROXY_CA_FILE names no file: a warning; the system's store alone then does
    not trust the proxy."""
    res = doctor(haproxy_up, GOOD, ca="/no/such/file.pem")
    report_line(res, "WARN  configuration: LUNAR_PROXY_CA_FILE")
    assert_doctor_fails(res, ANY_TLS_FAIL, "unable to get local issuer certificate")


def test_doctor_plain_http_where_tls_is_expected(haproxy_up, command):
    """8081 answers plain HTTP: the handshake fails (OpenSSL says "wrong version number"
    or "packet length too long") and the report gives a reason."""
    line = assert_proxy_tls_fails(doctor(haproxy_up, PLAIN), "TLS handshake failed")
    assert line.split("TLS handshake failed", 1)[1].strip(" :-").strip(), line


def test_doctor_reset_during_the_tls_handshake(listeners, command):
    lab = listeners
    before = len(lab.listener_log())
    assert_proxy_tls_fails(doctor(lab, RESET), "TLS handshake failed")
    recs = wait_listener_log(lab, before, 1)
    assert [r["listener"] for r in recs] == ["reset"] and recs[0]["client_hello"], recs


def test_doctor_times_out_on_a_silent_proxy(listeners, command):
    """LUNAR_PROXY_CONNECT_TIMEOUT_MS=300 bounds the TLS handshake too: a proxy that
    accepts and never answers is a FAIL that says it timed out, well within 5 s."""
    lab = listeners
    before = len(lab.listener_log())
    t0 = time.time()
    res = doctor(lab, SILENT, env={"LUNAR_PROXY_CONNECT_TIMEOUT_MS": "300"}, timeout=30)
    elapsed = time.time() - t0
    assert_proxy_tls_fails(res, "timed out")
    assert elapsed < 5, "doctor took %.1f s\n%s" % (elapsed, describe(res))
    recs = wait_listener_log(lab, before, 1)
    assert [r["listener"] for r in recs] == ["silent"] and recs[0]["client_hello"], recs


@pytest.mark.parametrize("traffic,reason", [
    (labmod.HAPROXY_TLS_TRAFFIC_WRONG_NAME, "certificate verify failed: hostname mismatch"),
    (labmod.HAPROXY_TLS_TRAFFIC_EXPIRED, "certificate verify failed: certificate has expired"),
    (labmod.HAPROXY_TLS_TRAFFIC_UNKNOWN_CA,
     "certificate verify failed: unable to get local issuer certificate"),
    (labmod.HAPROXY_TRAFFIC, "TLS handshake failed"),
], ids=["wrong-name", "expired", "unknown-ca", "plain-http"])
def test_doctor_checks_tls_on_the_traffic_port(haproxy_up, command, traffic, reason):
    """The handshake port is good, LUNAR_PROXY_HOST's port is not, for TLS (a bad
    certificate on 8401-8403, plain HTTP on 8000): diverted requests would all go
    direct, so the report FAILs, naming the port and OpenSSL's reason; exit 1."""
    res = doctor(haproxy_up, GOOD, host="%s:%d" % (PROXY_NAME, traffic))
    fails = [ln for ln in report_lines(res, "FAIL") if reason in ln and ":%d" % traffic in ln]
    assert len(fails) == 1, describe(res)
    assert res.rc == 1, describe(res)


# ---- a program under the library ---------------------------------------------------------

def test_program_with_tls_to_the_proxy_is_diverted_over_tls(haproxy_up, need_lib, tag):
    """TLS to the proxy asked for, with everything it needs (the TLS traffic port 8400,
    the TLS handshake port 8443, the lab CA, nothing else trusted): curl under the
    library is diverted over TLS. The origin's echo has Lunar's headers as HAProxy saw
    them and x-seen-proxy-tls; haproxy.log has the handshake on its TLS handshake
    frontend and the request on lunar_traffic~; nothing reached a plain port; no
    warning. (test_proxy_tls_traffic.py: every client, keep-alive, bodies, https,
    the failures of the traffic link.)"""
    lab = haproxy_up
    before = lab.haproxy_log()
    res = lab.run(["curl", "-sS", "-f", "http://api.example.test" + tag], debug=False, env={
        "LUNAR_PROXY_SUPPORT_TLS": "1",
        "LUNAR_PROXY_HOST": "%s:%d" % (PROXY_NAME, labmod.HAPROXY_TLS_TRAFFIC),
        "LUNAR_HANDSHAKE_PORT": str(GOOD), "LUNAR_PROXY_CA_FILE": lab.ca_file,
        "SSL_CERT_FILE": None, "SSL_CERT_DIR": None})
    assert_ok(res)
    e = one_echo(res)
    assert_proxied(e, res, "api.example.test", origin=API, path=tag)
    assert hdr(e, "x-seen-proxy-tls") in ("TLSv1.3", "TLSv1.2"), describe(res)
    lines = new_log(lab, before)
    assert [ln for ln in lines if " lunar_traffic~ " in ln and tag in ln], lines
    assert len([ln for ln in tls_requests(lines, GOOD) if '"GET /handshake ' in ln]) == 1, lines
    plain = [ln for ln in lines if " lunar_handshake " in ln or " lunar_traffic " in ln]
    assert not plain, "the proxy's plain ports saw the program\n" + "\n".join(plain)
    warned = [ln for ln in res.text_err.splitlines() if ln.startswith("[lunar-intercept ")]
    assert not warned, describe(res)
