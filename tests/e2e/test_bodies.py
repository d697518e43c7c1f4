"""Request and response bodies, framing and keep-alive through the proxy, for
every client."""
import json
import random

from conftest import (assert_ok, assert_proxied, echoes, hdr, labmod, one_echo, sha256)

API = "203.0.113.10:80"


def test_post_json(client, need_lib, tag):
    body = json.dumps({"name": "lunar", "n": 42, "list": [1, 2, 3], "text": "h\u00e9llo"}).encode()
    res = client.run("POST", "http://api.example.test" + tag, data=body,
                     headers=["Content-Type: application/json", "X-Custom: abc 123"])
    assert_ok(res)
    e = one_echo(res)
    assert_proxied(e, res, "api.example.test", origin=API, path=tag)
    assert e["method"] == "POST"
    assert e["body_len"] == len(body) and e["body_sha256"] == sha256(body), e
    assert hdr(e, "content-type") == "application/json"
    assert hdr(e, "x-custom") == "abc 123"


def test_put_and_delete(client, need_lib, tag):
    body = b"put-body-" * 100
    res = client.run("PUT", "http://api.example.test" + tag, data=body,
                     headers=["Content-Type: application/octet-stream"])
    assert_ok(res)
    e = one_echo(res)
    assert_proxied(e, res, "api.example.test", origin=API)
    assert e["method"] == "PUT" and e["body_sha256"] == sha256(body)
    res = client.run("DELETE", "http://api.example.test" + tag)
    assert_ok(res)
    e = one_echo(res)
    assert_proxied(e, res, "api.example.test", origin=API)
    assert e["method"] == "DELETE" and e["body_len"] == 0


def test_post_2mib(client, need_lib, tag):
    body = random.Random(7).randbytes(2 * 1024 * 1024)
    res = client.run("POST", "http://api.example.test" + tag, data=body,
                     headers=["Content-Type: application/octet-stream"], timeout=90)
    assert_ok(res)
    e = one_echo(res)
    assert_proxied(e, res, "api.example.test", origin=API, path=tag)
    assert e["body_len"] == len(body) and e["body_sha256"] == sha256(body), \
        "body arrived as %d bytes sha %s" % (e["body_len"], e["body_sha256"])


def test_chunked_upload(client, need_lib, tag):
    client.skip_if_cannot("chunked")
    body = random.Random(11).randbytes(300000)
    res = client.run("POST", "http://api.example.test" + tag, data=body, chunked=True,
                     headers=["Content-Type: application/octet-stream"])
    assert_ok(res)
    e = one_echo(res)
    assert_proxied(e, res, "api.example.test", origin=API, path=tag)
    assert e["body_len"] == len(body) and e["body_sha256"] == sha256(body), e


def test_keepalive_three_requests_one_connection(client, need_lib, tag):
    client.skip_if_cannot("keepalive")
    res = client.run("GET", "http://api.example.test" + tag, repeat=3)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3, "expected 3 responses\n%r" % res
    rids = [assert_proxied(e, res, "api.example.test", origin=API, path=tag) for e in es]
    assert len(set(rids)) == 3, "req-ids not distinct: %s" % rids
    srcs = [hdr(e, "x-seen-src") for e in es]
    assert len(set(srcs)) == 1, "the 3 requests reached the proxy on different connections: %s" % srcs


def test_keepalive_posts_one_connection(client, need_lib, tag):
    client.skip_if_cannot("keepalive")
    body = b'{"k": "' + b"v" * 5000 + b'"}'
    res = client.run("POST", "http://api.example.test" + tag, data=body, repeat=3,
                     headers=["Content-Type: application/json"])
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3
    for e in es:
        assert_proxied(e, res, "api.example.test", origin=API)
        assert e["body_sha256"] == sha256(body)
    assert len({hdr(e, "x-seen-src") for e in es}) == 1


def test_large_download(client, need_lib, tag):
    n = 3 * 1000 * 1000 + 7
    res = client.run("GET", "http://api.example.test/bytes/%d?%s" % (n, tag[1:]), timeout=90)
    assert_ok(res)
    assert len(res.out) == n and sha256(res.out) == sha256(labmod.pattern_bytes(n)), \
        "download: %d bytes, sha mismatch" % len(res.out)
    recs = client.lab.origin_log(contains=tag[1:])
    assert recs and dict((k.lower(), v) for k, v in recs[0]["headers"]).get("x-via-haproxy") == "1"


def test_chunked_download(client, need_lib, tag):
    n = 1000 * 1000 + 3
    res = client.run("GET", "http://api.example.test/chunked/%d?%s" % (n, tag[1:]), timeout=90)
    assert_ok(res)
    assert sha256(res.out) == sha256(labmod.pattern_bytes(n)), "chunked download: %d bytes" % len(res.out)
