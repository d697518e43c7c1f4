"""https: which sessions become virtual, judged by what only the TLS layer knows.

- the server name (SNI) is judged by the filter as a host name: a program that connects
  by address but names a block-listed host keeps its TLS end to end (socket BIO: Python;
  custom BIO: curl with --resolve, so no getaddrinfo name either);
- TLS that cannot be tied to its socket (asyncio's memory BIOs) reaches the diverted
  socket as a raw ClientHello: the socket goes to the origin and the TLS is untouched;
- LUNAR_PROXY_SUPPORT_TLS=1 with the lab's plain proxy ports (no TLS there): the
  handshake fails, https stays end to end (test_proxy_tls_traffic.py: https diverted
  inside TLS to the proxy's TLS ports).
"""
import os

import pytest

from conftest import PY, REPO, assert_ok, one_echo, sha256
from test_https import API, API_TLS, assert_direct_tls, assert_proxied_tls, haproxy_up  # noqa: F401

BY_ADDRESS = r"""
import socket, ssl, sys
path, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("203.0.113.10", 443), timeout=20)
tls = ctx.wrap_socket(raw, server_hostname="api.example.test")
tls.sendall(("GET %s HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n" % path).encode())
data = b""
while True:
    chunk = tls.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
assert head.startswith(b"HTTP/1.1 200"), head
sys.stdout.buffer.write(body)
"""

ASYNCIO = r"""
import asyncio, ssl, sys
path, ca = sys.argv[1], sys.argv[2]
async def main():
    ctx = ssl.create_default_context(cafile=ca)
    reader, writer = await asyncio.open_connection("api.example.test", 443, ssl=ctx)
    writer.write(("GET %s HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n" % path).encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    sys.stdout.buffer.write(body)
asyncio.run(main())
"""


def run_py(lab, script, tag, env):
    env = dict(lab.tls_env(), **env)
    return lab.run([PY, "-c", script, tag, lab.ca_file], env=env, debug=True, timeout=30)


@pytest.mark.parametrize("blocked", [False, True], ids=["diverted", "block-listed"])
def test_server_name_is_judged_socket_bio(lab, need_lib, haproxy_up, tag, blocked):  # noqa: F811
    env = {"LUNAR_BLOCK_LIST": API} if blocked else {}
    res = run_py(lab, BY_ADDRESS, tag, env)
    assert_ok(res)
    e = one_echo(res)
    if blocked:
        assert_direct_tls(e, res, path=tag)
        assert "TLS server name api.example.test" in res.text_err, "the DEBUG line names why"
    else:
        assert_proxied_tls(e, res, path=tag)


def test_server_name_is_judged_custom_bio(lab, need_lib, haproxy_up, tag):  # noqa: F811
    """curl's own BIO: the name is judged when its ClientHello appears."""
    res = lab.run(["curl", "-sS", "--cacert", lab.ca_file, "--resolve", "%s:443:%s" % (API, API_TLS.split(":")[0]),
                   "https://%s%s" % (API, tag)], env={"LUNAR_BLOCK_LIST": API}, debug=True, timeout=30)
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, path=tag)


def test_asyncio_memory_bio_tls_passes_through(lab, need_lib, haproxy_up, tag):  # noqa: F811
    res = run_py(lab, ASYNCIO, tag, {})
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, path=tag)
    assert "not HTTP/1.x" in res.text_err, "the DEBUG line says why it went direct"


def test_proxy_support_tls_keeps_https_end_to_end(lab, need_lib, haproxy_up, tag):  # noqa: F811
    """TLS to the proxy asked for, the proxy's ports plain (8000, 8081): the handshake
    over TLS fails, and the program's https goes to the origin, its TLS untouched."""
    res = run_py(lab, BY_ADDRESS, tag, {"LUNAR_PROXY_SUPPORT_TLS": "1"})
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, path=tag)


ALLOW_FALSE_PY = r"""
import http.client, ssl, sys
path, ca = sys.argv[1], sys.argv[2]
c = http.client.HTTPSConnection("api.example.test", context=ssl.create_default_context(cafile=ca), timeout=20)
c.request("POST", path, body=b'{"k": "v"}', headers={"x-lunar-allow": "false", "Content-Type": "application/json"})
r = c.getresponse()
assert r.status == 200, r.status
sys.stdout.buffer.write(r.read())
"""


@pytest.mark.parametrize("client", ["curl", "wget", "python"])
def test_x_lunar_allow_false_moves_https_to_the_origin(lab, need_lib, haproxy_up, tag, client):  # noqa: F811
    """The first request's `x-lunar-allow: false` takes a virtual session's socket to the
    origin: the request goes there over real TLS, without the header, body intact."""
    body = b'{"k": "v"}'
    if client == "python":
        res = run_py(lab, ALLOW_FALSE_PY, tag, {})
    elif client == "curl":
        res = lab.run(["curl", "-sS", "--cacert", lab.ca_file, "-H", "x-lunar-allow: false",
                       "-H", "Content-Type: application/json", "--data-binary", body.decode(),
                       "https://%s%s" % (API, tag)], debug=True, timeout=30)
    else:
        res = lab.run(["wget", "-q", "-O", "-", "--ca-certificate=" + lab.ca_file,
                       "--header=x-lunar-allow: false", "--header=Content-Type: application/json",
                       "--post-data=" + body.decode(), "https://%s%s" % (API, tag)], debug=True, timeout=30)
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)
    assert "x-lunar-allow: false; moved at first request" in res.text_err


@pytest.mark.parametrize("prog", ["tls_deepbind", "tls_deepbind_gnutls"])
def test_tls_library_loaded_with_deepbind_is_left_alone(lab, need_lib, haproxy_up, tag, prog):  # noqa: F811
    """libssl (c-tests/tls_deepbind.c) or libgnutls (tls_deepbind_gnutls.c) dlopen'ed with
    RTLD_DEEPBIND before the connect: its socket I/O binds past the library, so the https
    must not be diverted: the program's own TLS reaches the origin, verified, and the
    DEBUG line says why (each program breaks if the library diverts it)."""
    res = lab.run([os.path.join(REPO, "c-tests", "bin", prog), API, "443", tag, lab.ca_file],
                  debug=True, timeout=30)
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, path=tag)
    assert "bypasses this library" in res.text_err, "the DEBUG line names why"
