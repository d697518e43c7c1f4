"""Issue 13, item 3 (the `run` part): `lunar-intercept run [--lib PATH] [--] CMD ...`.

The command from `make build` (target/release/lunar-intercept) runs programs inside the
lab's namespace with no LD_PRELOAD of their own (lab.run(preload=False)); the proxy is
named by LUNAR_PROXY_HOST as usual. What a user checks: the program's request went
through the proxy (the same program without the command goes direct), its exit status
and the signal it died of are its own, and a library that cannot be found is said.
"""
import os
import subprocess

import pytest

from conftest import REPO, assert_direct, assert_proxied, one_echo

COMMAND = os.path.join(REPO, "target", "release", "lunar-intercept")
API = "203.0.113.10:80"


@pytest.fixture
def command():
    if not os.path.exists(COMMAND):
        pytest.fail("command not built: %s (make build)" % COMMAND)
    return COMMAND


def test_run_diverts_the_program(lab, need_lib, command, tag):
    url = "http://api.example.test%s" % tag
    res = lab.run([command, "run", "--", "curl", "-sS", url], preload=False)
    assert res.rc == 0, res
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    control = lab.run(["curl", "-sS", url + "/control"], preload=False)
    assert control.rc == 0, control
    assert_direct(one_echo(control), control, origin=API, path=tag + "/control")


def test_run_with_a_named_library(lab, need_lib, command, tag):
    """--lib names the library (here the same one by its own path)."""
    res = lab.run([command, "run", "--lib", need_lib, "curl", "-sS",
                   "http://api.example.test%s" % tag], preload=False)
    assert res.rc == 0, res
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)


def test_run_passes_exit_status_and_signals_through(lab, command):
    """CMD replaces the command: exit status 7 is 7, death by SIGTERM is death by SIGTERM,
    and the program sees the library first in its LD_PRELOAD (kept once)."""
    res = lab.run([command, "run", "sh", "-c", "exit 7"], preload=False)
    assert res.rc == 7, res
    res = lab.run([command, "run", "sh", "-c", "kill -TERM $$"], preload=False)
    assert res.rc == -15, res
    lib = os.path.realpath(os.path.join(REPO, "target", "release", "liblunar_intercept.so"))
    res = lab.run([command, "run", "sh", "-c", 'echo "$LD_PRELOAD"'], preload=False,
                  env={"LD_PRELOAD": "libother.so %s" % lib})
    assert res.out.decode().strip() == "%s:libother.so" % lib, res


def test_run_says_what_is_missing(lab, command, tmp_path):
    res = lab.run([command, "run", "--lib", str(tmp_path / "nope.so"), "true"], preload=False)
    assert res.rc == 127 and b"nope.so" in res.err, res
    res = lab.run([command, "run", "no-such-program-here"], preload=False)
    assert res.rc == 127 and b"no-such-program-here" in res.err, res
    res = lab.run([command, "run"], preload=False)
    assert res.rc == 2 and b"usage" not in res.err and b"no command" in res.err, res
    res = lab.run([command, "--help"], preload=False)
    assert res.rc == 0 and res.out.startswith(b"usage: lunar-intercept run"), res


def explain(lab, url, *extra, env=None):
    return lab.run([COMMAND, "explain", url] + list(extra), preload=False, env=env)


def test_explain_answers_as_the_library_would(lab, need_lib, command, haproxy_restored):
    """The library's own answer: through the proxy for an external name; direct for an
    internal address, for x-lunar-allow: false, for a block-listed host, for a port not
    intercepted; proxy unavailable while HAProxy is down. Each is what a connect of a
    program with the same environment does (the other tests of the suite check that)."""
    res = explain(lab, "http://api.example.test/x")
    assert res.rc == 0, res
    assert res.out.decode() == "http://api.example.test/x -> proxy 127.0.0.1:8000 (external)\n", res
    res = explain(lab, "http://10.0.0.5/x")
    assert res.out.decode().endswith("-> direct (internal)\n"), res
    res = explain(lab, "http://api.example.test/x", "--header", "x-lunar-allow: false")
    assert res.out.decode().endswith("-> direct (x-lunar-allow: false)\n"), res
    res = explain(lab, "http://api.example.test/x", env={"LUNAR_BLOCK_LIST": "api.example.test"})
    assert res.out.decode().endswith("-> direct (block list)\n"), res
    res = explain(lab, "http://api.example.test:8080/x")
    assert "direct (port 8080 is not intercepted" in res.out.decode(), res
    res = explain(lab, "https://api.example.test/x")
    assert res.out.decode().startswith("https://api.example.test/x -> proxy 127.0.0.1:8000"), res
    lab.stop_haproxy()
    res = explain(lab, "http://api.example.test/x")
    assert res.out.decode().endswith("-> direct (proxy unavailable)\n"), res
    res = explain(lab, "http://api.example.test/x", env={"LUNAR_PROXY_HOST": ""})
    assert "-> inert (no proxy configured" in res.out.decode(), res


# ---- doctor ---------------------------------------------------------------------------

def doctor(lab, *args, env=None):
    return lab.run([COMMAND, "doctor"] + list(args), preload=False, env=env)


def report_lines(res, prefix):
    return [line for line in res.out.decode().splitlines() if line.startswith(prefix)]


def test_doctor_passes_with_the_proxy_up(lab, need_lib, command, tmp_path):
    """Every value with its origin (environment over the file, file, default); the
    proxy's traffic port connected and the handshake answered (the lab's proxy says
    managed: true on 8082); exit 0."""
    conf = tmp_path / "interceptor.conf"
    conf.write_text("LUNAR_TENANT_ID=file-tenant\nLUNAR_PROXY_HOST=10.9.9.9:1\n")
    res = doctor(lab, env={"LUNAR_INTERCEPTOR_CONFIG": str(conf), "LUNAR_HANDSHAKE_PORT": "8082"})
    out = res.out.decode()
    assert res.rc == 0, res
    assert not report_lines(res, "FAIL") and not report_lines(res, "WARN"), out
    line = lambda name: next(l for l in out.splitlines() if l.startswith("  %s " % name))
    assert line("LUNAR_PROXY_HOST").split() == ["LUNAR_PROXY_HOST", "=", "127.0.0.1:8000", "(environment)"], out
    assert line("LUNAR_TENANT_ID").endswith("(file %s)" % conf), out
    assert line("LUNAR_EXIT_COOLDOWN_AFTER_SEC").endswith("(default: 10)"), out
    assert "PASS  proxy traffic port: TCP connect to 127.0.0.1:8000 in " in out, out
    assert "PASS  handshake: GET /handshake on 127.0.0.1:8082 answered in " in out, out
    assert "managed: true, tenant: file-tenant" in out, out


def test_doctor_fails_and_says_why(lab, need_lib, command, haproxy_restored):
    """No proxy configured; a bad value warned; the proxy down: FAIL with advice, exit 1."""
    res = doctor(lab, env={"LUNAR_PROXY_HOST": ""})
    assert res.rc == 1, res
    assert report_lines(res, "FAIL  configuration: LUNAR_PROXY_HOST is set neither"), res
    res = doctor(lab, env={"LUNAR_PROXY_CONNECT_TIMEOUT_MS": "soon"})
    assert res.rc == 0, res
    assert report_lines(res, 'WARN  configuration: LUNAR_PROXY_CONNECT_TIMEOUT_MS="soon"'), res
    res = doctor(lab, env={"LUNAR_PROXY_HOST": "no-such-proxy.invalid:8000"})
    assert res.rc == 1 and report_lines(res, "FAIL  proxy address: cannot resolve"), res
    lab.stop_haproxy()
    res = doctor(lab)
    assert res.rc == 1, res
    fail = report_lines(res, "FAIL  proxy traffic port: TCP connect to 127.0.0.1:8000:")
    assert fail and "refused" in fail[0], res
    assert "-> is Lunar Proxy running" in res.out.decode(), res


def test_doctor_judges_programs(lab, need_lib, command, tmp_path):
    """curl: http and https (OpenSSL) diverted; wget: GnuTLS; Node and Java: https
    through the language hooks beside the library (PASS), or WARN where the hook is not
    built; a static program and a missing one: FAIL (exit 1)."""
    res = doctor(lab, "curl")
    assert res.rc == 0, res
    assert report_lines(res, "PASS  curl http: "), res
    assert report_lines(res, "PASS  curl https: OpenSSL (") , res
    res = doctor(lab, "wget")
    assert report_lines(res, "PASS  wget https: GnuTLS (") and res.rc == 0, res
    res = doctor(lab, "node")
    assert res.rc == 0 and report_lines(res, "PASS  node http: "), res
    assert report_lines(res, "PASS  node https: Node: its https is diverted through the "
                             "library's Node hook (%s/lunar-node-hook.cjs)"
                        % os.path.dirname(os.path.realpath(os.environ["LUNAR_LIB"]))), res
    res = doctor(lab, "java")
    hook = os.path.join(os.path.dirname(os.environ["LUNAR_LIB"]), "lunar-java-hook.jar")
    if os.path.exists(hook):
        assert res.rc == 0 and report_lines(res, "PASS  java https: a JVM ("), res
        assert "through the library's Java hook" in res.out.decode(), res
    else:
        assert res.rc == 0 and report_lines(res, "WARN  java https: a JVM ("), res
    res = doctor(lab, "/usr/bin/python3")
    assert report_lines(res, "PASS  /usr/bin/python3 https: Python: its ssl module"), res
    source = tmp_path / "static.c"
    source.write_text("int main(void) { return 0; }\n")
    static = tmp_path / "static"
    subprocess.run(["cc", "-static", "-o", str(static), str(source)], check=True)
    res = doctor(lab, str(static))
    assert res.rc == 1, res
    assert report_lines(res, "FAIL  %s: %s is statically linked" % (static, static)), res
    res = doctor(lab, "no-such-program-here")
    assert res.rc == 1 and report_lines(res, "FAIL  no-such-program-here: not found"), res
