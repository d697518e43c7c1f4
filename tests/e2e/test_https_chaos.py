"""https under a failing proxy: the test proxy picks, per connection, one of pass, down
(reset at accept), error:2 (x-lunar-error) and close (closes after the request) at random.
Every request of every client must get the origin's answer with its body intact, whether
it went through the proxy or fell back to the origin over real TLS; the origin must see
each request once. The cooldown is kept out of the way (failures every time).

Bodies are judged by their checksums, both ways: Python and curl by the origin's echo of
the sha256 of what they sent; the C programs (a GET and a 100 kB or 2 MB POST each) ask
for /bytes/N, so each answer they print the sha256 of must be the origin's N pattern
bytes, and the origin's log must show each POST body intact."""
import hashlib
import os
import re

from conftest import PY, assert_ok, labmod
from test_https import API, TESTPROXY_ENV, TLS_PROGRAM_POST, c_tls_bins  # noqa: F401

# The 2 MB POST of tls_nonblock_epoll must stay replayable (default cap 1 MiB): it follows
# a GET on its connection, and after a fallback the POST returns to the proxy (each
# request is routed when it is sent), where a new connection may fail it.
ENV = dict(TESTPROXY_ENV, LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS="100000",
           LUNAR_REPLAY_MAX_BYTES=str(4 * 1024 * 1024))

# The C programs GET and POST /bytes/ANSWER_BYTES: both answers are the origin's pattern.
ANSWER_BYTES = 100000
C_PROGRAMS = ("tls_nonblock_epoll", "tls_custom_bio", "tls_gnutls")
C_RUNS = 15


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def c_program_answers(prog, err):
    """What a tls_* program reported on stderr per response: [(status, body_len, sha256)]."""
    status = re.findall(r"^%s: status=(\d+) body_len=(\d+)$" % prog, err, re.M)
    sums = re.findall(r"^%s: body_sha256=([0-9a-f]{64})$" % prog, err, re.M)
    if len(status) != len(sums):
        return None
    return [(int(st), int(n), h) for (st, n), h in zip(status, sums)]

PYTHON_KEEPALIVE = r"""
import hashlib, http.client, json, random, ssl, sys
tag, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
rng = random.Random(5)
ok, conn = 0, None
for i in range(n):
    if conn is None or i % 5 == 0:
        conn = http.client.HTTPSConnection("api.example.test", context=ctx, timeout=20)
    body = rng.randbytes(rng.choice([10, 5000, 200000]))
    conn.request("POST", "%s/py%d" % (tag, i), body=body)
    r = conn.getresponse()
    echo = json.loads(r.read())
    if r.status == 200 and echo["path"] == "%s/py%d" % (tag, i) \
            and echo["body_sha256"] == hashlib.sha256(body).hexdigest():
        ok += 1
    else:
        print("bad answer to request %d: %s" % (i, r.status), file=sys.stderr)
print("OK %d" % ok)
"""


def test_https_clients_through_a_randomly_failing_proxy(lab, need_lib, testproxy, c_tls_bins,  # noqa: F811
                                                        tag):
    lab.set_mode("random:7")
    env = dict(lab.tls_env(), **ENV)
    failures = []

    res = lab.run([PY, "-c", PYTHON_KEEPALIVE, tag, lab.ca_file, "150"], env=env, timeout=180)
    assert_ok(res)
    if "OK 150" not in res.text_out:
        failures.append("python: " + res.text_out[-200:] + res.text_err[-500:])

    for i in range(40):
        body = ("curl body %d" % i).encode()
        res = lab.run(["curl", "-sS", "--cacert", lab.ca_file, "--data-binary", body.decode(),
                       "https://%s%s/curl%d" % (API, tag, i)], env=env, timeout=30)
        if res.rc != 0 or hashlib.sha256(body).hexdigest() not in res.text_out:
            failures.append("curl %d: rc %s %s" % (i, res.rc, res.text_err[-300:]))

    answer = (200, ANSWER_BYTES, sha256(labmod.pattern_bytes(ANSWER_BYTES)))
    c_paths = {}  # path -> the sha256 of the body its POST sent
    for prog in C_PROGRAMS:
        for i in range(C_RUNS):
            path = "/bytes/%d?%s/%s%d" % (ANSWER_BYTES, tag, prog, i)
            c_paths[path] = sha256(labmod.pattern_bytes(TLS_PROGRAM_POST.get(prog, 100000)))
            res = lab.run([os.path.join(c_tls_bins, prog), API, "443", path, lab.ca_file],
                          env=env, timeout=30)
            got = c_program_answers(prog, res.text_err)
            if res.rc != 0 or got != [answer, answer]:
                failures.append("%s %d: rc %s, answers (status, body_len, sha256) %s, want 2 x %s\n%s"
                                % (prog, i, res.rc, got, answer, res.text_err[-300:]))

    assert not failures, "\n".join(failures[:10])
    # each request reached the origin once (forwarded by the proxy, or replayed by us)
    # (the C programs send a GET and a POST to their path)
    seen = {}
    for record in lab.origin_log(contains=tag):
        key = (record.get("method"), record["path"])
        seen[key] = seen.get(key, 0) + 1
    twice = {p: n for p, n in seen.items() if n != 1}
    assert not twice, "requests executed more than once at the origin: %s" % twice
    kinds = {r.get("action") for r in lab.testproxy_log() if r.get("kind") == "traffic"}
    assert {"pass", "error", "close"} <= kinds or len(kinds) >= 3, \
        "the proxy did not mix its failures: %s" % kinds
    assert len(seen) == 150 + 40 + len(C_PROGRAMS) * C_RUNS * 2, "the origin saw %d requests" % len(seen)
    # the C programs' POST bodies reached the origin intact (once each, checked above)
    posted = {r["path"]: r.get("body_sha256") for r in lab.origin_log(contains=tag)
              if r.get("method") == "POST" and r["path"] in c_paths}
    assert posted == c_paths, "C POST bodies at the origin: %d of %d intact" % (
        sum(posted.get(p) == h for p, h in c_paths.items()), len(c_paths))
