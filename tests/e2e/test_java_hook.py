"""https of JVM programs through the Java hook (lang/java, lang/PROTOCOL.md section 7).

The preload's JLI_Launch adds, right after the `java` launcher's argv[0],
`-Xbootclasspath/a:<dir>/lunar-java-hook.jar` and `-Djava.security.properties=/proc/<pid>/fd/N`
(a close-on-exec memfd, `memfd:lunar-java-security`, holding the JDK's providers with
dev.lunar.intercept.LunarProvider right before SunJSSE and
`lunar.intercept.hook=v1 <pid> <token> <ports>`). The JDK loads the provider at the first
lookup that reaches its slot (any SSLContext); active, it dresses the program's TLS
connections to intercepted ports as plain sockets whose plaintext the preload diverts like
any https request (`x-lunar-scheme: https`), and runs the relay that makes real TLS, with the
program's own trust and parameters, whenever the preload sends a connection to the origin.
A program that sets java.security.properties itself is left alone.

Clients: `clients/JavaHookClient.java` (java.net.http.HttpClient with its default HTTP_2 +
ALPN, or HttpsURLConnection; SSLContext.getDefault() trusting the lab CA through
lab.java_opts(), or an app-made SSLContext.getInstance("TLS") with its own TrustManager);
`clients/JavaHookProbe.java` (what the JVM sees of the injection: its security properties,
input arguments, memfd descriptors; a child process). Needs `lunar-java-hook.jar` beside the
library (`make build`).
"""
import importlib.util
import json
import os
import random
import re
import subprocess
import time

import pytest

from conftest import (CLIENT_DIR, JAVA_OPTS, REPO, assert_ok, describe, echoes, hdr, labmod, one_echo,
                      sha256)
from test_https import (API, API_TLS, API_TLS_8443, PORTS_8443, TESTPROXY_ENV,  # noqa: F401
                        assert_direct_tls, assert_proxied_tls, h, haproxy_down, haproxy_up,
                        proxy_log_for)

UNTRUSTED_TLS = "%s:443" % labmod.UNTRUSTED_IP
COOLDOWN_ENV = {"LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS": "2", "LUNAR_EXIT_COOLDOWN_AFTER_SEC": "3"}
APIS = ["httpclient", "urlconn"]
# The JDK's own words for a certificate it does not trust, or one without the host's name
# (JDK 25 puts the alert first: "(certificate_unknown) PKIX path building failed").
PKIX = re.compile(r"SSLHandshakeException: (\(\w+\) )?PKIX path building failed")
NO_NAME = re.compile(r"SSLHandshakeException: (\(\w+\) )?No subject alternative DNS name matching "
                     r"wrongname\.example\.test")
# The hook's classes: the provider the JDK loads from the properties, and what it loads.
HOOK_PACKAGE = "dev.lunar.intercept."
PROVIDER_CLASS = "dev.lunar.intercept.LunarProvider"
MEMFD = "memfd:lunar-java-security"
HOOK_LINE = re.compile(r"v1 (\d+) ([0-9a-f]{32}) 80,443")


def load_hook_test():
    """lang/java/test/hook_test.py, whose security_properties() plays the preload there."""
    spec = importlib.util.spec_from_file_location(
        "lunar_java_hook_test", os.path.join(REPO, "lang", "java", "test", "hook_test.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- fixtures -------------------------------------------------------------------

@pytest.fixture(scope="session")
def java_hook_classes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("java-hook-clients"))
    r = subprocess.run(["javac", "-d", out] + [os.path.join(CLIENT_DIR, f) for f in
                                               ("JavaHookClient.java", "JavaHookProbe.java")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("javac failed:\n" + r.stdout.decode())
    return out


@pytest.fixture
def java_hook(need_lib):
    """The hook's jar beside the library, where the preload finds it."""
    jar = os.path.join(os.path.dirname(need_lib), "lunar-java-hook.jar")
    if not os.path.exists(jar):
        pytest.fail("no %s (make build builds lang/java's hook beside the library)" % jar)
    return jar


class JavaClient:
    def __init__(self, api, lab, classes, tmpdir):
        self.api, self.lab, self.classes, self.tmpdir = api, lab, classes, tmpdir

    def run(self, method, url, data=None, headers=(), repeat=1, interval=None, new_connection=False,
            app_trust=False, ca=None, http1=False, env=None, preload=True, debug=True, timeout=90,
            jvm_opts=()):
        argv = ["java"] + JAVA_OPTS + list(jvm_opts)
        if not app_trust:
            argv += self.lab.java_opts(ca)
        argv += ["-cp", self.classes, "JavaHookClient", self.api, method, url]
        if app_trust:
            argv += ["--app-trust", self.lab.java_truststore(ca)]
        if data is not None:
            path = os.path.join(self.tmpdir, "body-%d.bin" % random.randrange(1 << 30))
            with open(path, "wb") as f:
                f.write(data)
            argv += ["--data-file", path]
        for h in headers:
            argv += ["--header", h]
        if repeat != 1:
            argv += ["--repeat", str(repeat)]
        if interval is not None:
            argv += ["--interval", str(interval)]
        if new_connection:
            argv.append("--new-connection")
        if http1:
            argv.append("--http1")
        return self.lab.run(argv, env=env, preload=preload, debug=debug, timeout=timeout)


@pytest.fixture(params=APIS)
def jclient(request, lab, java_hook_classes, tmp_path):
    return JavaClient(request.param, lab, java_hook_classes, str(tmp_path))


@pytest.fixture
def httpclient(lab, java_hook_classes, tmp_path):
    return JavaClient("httpclient", lab, java_hook_classes, str(tmp_path))


# ---- what arrived -------------------------------------------------------------------

def assert_program_error(res, pattern):
    """The program's own TLS error (the JDK's exception and words), no body."""
    assert res.rc != 0, "the program accepted a certificate it must reject\n" + describe(res)
    assert res.out == b"", "a body despite the TLS error\n" + describe(res)
    assert pattern.search(res.text_err), "not the program's own TLS error\n" + describe(res)


def origin_records_since(lab, n):
    return labmod._json_lines(lab.origin_log_path)[n:]


def no_plaintext_at(recs, server):
    """No byte of the program's plaintext reached this TLS origin: every connection there
    failed its handshake on the certificate (a plaintext request shows as an HTTP_REQUEST or
    WRONG_VERSION_NUMBER error), and none was answered."""
    mine = [r for r in recs if r.get("server") == server]
    assert not [r for r in mine if "path" in r], "a request was answered at %s: %s" % (server, mine)
    bad = [r for r in mine if re.search(r"HTTP_REQUEST|WRONG_VERSION|http request|LUNAR",
                                        r.get("tls_error", ""), re.I)]
    assert not bad, "plaintext reached %s: %s" % (server, bad)


# ==== the launcher: java gets the hook's two options, nothing printed; javac untouched =======

def probe(lab, classes, args, jvm_opts=(), **kw):
    """JavaHookProbe ARGS under the preload (lab.run's keywords)."""
    kw.setdefault("debug", False)
    return lab.run(["java"] + JAVA_OPTS + list(jvm_opts) + ["-cp", classes, "JavaHookProbe"] + list(args), **kw)


def state_of(res):
    """The probe's STATE line, and a Result of the rest of its stdout (a child's)."""
    lines = res.out.split(b"\n")
    states = [ln for ln in lines if ln.startswith(b"STATE ")]
    assert len(states) == 1, "no STATE line\n" + describe(res)
    rest = b"".join(ln + b"\n" for ln in lines if ln and not ln.startswith(b"STATE "))
    return json.loads(states[0][len(b"STATE "):]), labmod.Result(res.rc, rest, res.err, res.argv, res.elapsed)


def ours(arg, jar):
    """One of the preload's two options."""
    return (arg.startswith("-Xbootclasspath/a:")
            and os.path.realpath(arg[len("-Xbootclasspath/a:"):]) == os.path.realpath(jar)) \
        or re.fullmatch(r"-Djava\.security\.properties=/proc/(\d+|self)/fd/\d+", arg) is not None


def assert_injected(st, jar, res):
    """The JVM got the preload's two options first, once each; the properties file is its
    one memfd, close-on-exec, holding exactly what lang/java/test/hook_test.py's
    security_properties() makes of this JDK's java.security with the hook's line for this
    JVM (its pid, a token, the ports)."""
    ctx = "\nstate: %s\n%s" % (json.dumps(st, indent=1), describe(res))
    args = st["input_args"]
    assert len(args) >= 2 and args[0].startswith("-Xbootclasspath/a:") and ours(args[0], jar), \
        "not the hook's boot class path first" + ctx
    m = re.fullmatch(r"-Djava\.security\.properties=/proc/%d/fd/(\d+)" % st["pid"], args[1])
    assert m, "not the hook's security properties second" + ctx
    assert [a for a in args if ours(a, jar)] == args[:2], "the hook's options more than once" + ctx
    fd = int(m.group(1))
    assert [(f["fd"], MEMFD in f["target"], f["cloexec"]) for f in st["memfds"]] == [(fd, True, True)], \
        "not one close-on-exec memfd, the one named" + ctx
    assert st["security_properties"] == "/proc/%d/fd/%d" % (st["pid"], fd), ctx
    hook = HOOK_LINE.fullmatch(st["hook"] or "")
    assert hook and int(hook.group(1)) == st["pid"], "the hook's property is not for this JVM" + ctx
    with open(os.path.join(st["java_home"], "conf", "security", "java.security"), encoding="latin-1") as f:
        master = f.read()
    want = load_hook_test().security_properties(master, st["hook"])
    assert want and st["file"] == want, "the properties are not the JDK's with ours:\n%s\n!=\n%s%s" % (
        st["file"], want, ctx)


def assert_not_injected(st, jar, res):
    ctx = "\nstate: %s\n%s" % (json.dumps(st, indent=1), describe(res))
    assert st["hook"] is None, "the hook's property is set" + ctx
    assert not [a for a in st["input_args"] if ours(a, jar)], "the hook's options were added" + ctx
    assert st["memfds"] == [], "a memfd of the hook's" + ctx


def hook_classes(text):
    """The hook's classes in a -Xlog:class+load log."""
    return sorted(set(re.findall(r"\[class,load\] (dev\.lunar\.intercept\.[\w$]+) ", text)))


def test_java_version_unchanged(lab, need_lib, java_hook):
    """`java -version` prints exactly the same with the preload (and its hook) as without."""
    base = lab.run(["java", "-version"], preload=False, debug=False)
    res = lab.run(["java", "-version"], debug=False)
    assert base.rc == res.rc == 0, describe(res)
    assert (res.out, res.err) == (base.out, base.err), \
        "java -version differs under the preload:\n%r\n%r" % (base.err, res.err)


def test_hook_injected_into_java_only(lab, need_lib, java_hook, java_hook_classes):
    """`java` under the preload gets the two options (a positive control for the other
    tests), not without a configuration; javac never."""
    res = probe(lab, java_hook_classes, ["state"])
    assert res.rc == 0 and res.err == b"", describe(res)
    assert_injected(state_of(res)[0], java_hook, res)
    res = probe(lab, java_hook_classes, ["state"], proxy=False)
    assert res.rc == 0 and res.err == b"", describe(res)
    st = state_of(res)[0]
    assert_not_injected(st, java_hook, res)
    assert st["security_properties"] is None, "java.security.properties without LUNAR_PROXY_HOST"
    base = lab.run(["javac", "-version"], preload=False, debug=False)
    res = lab.run(["javac", "-version"], debug=False)
    assert (res.rc, res.out, res.err) == (base.rc, base.out, base.err), describe(res)
    # The JVM's system properties name the file: in java (the control), not in javac.
    res = lab.run(["java", "-XshowSettings:properties", "-version"], debug=False)
    assert re.search(r"java\.security\.properties = /proc/\d+/fd/\d+", res.text_err), describe(res)
    res = lab.run(["javac", "-J-XshowSettings:properties", "-version"], debug=False)
    assert res.rc == 0 and "sun.java.command = jdk.compiler/com.sun.tools.javac.Main" in res.text_err, describe(res)
    assert "java.security.properties" not in res.text_err and "lunar" not in res.text_err.lower(), \
        "the hook went into javac\n" + describe(res)


def test_javac_compiles_under_preload(lab, need_lib, java_hook, tmp_path):
    src = tmp_path / "Hello.java"
    src.write_text("public class Hello { public static void main(String[] a) { System.out.println(\"hi\"); } }\n")
    res = lab.run(["javac", "-d", str(tmp_path), str(src)], debug=False)
    assert res.rc == 0 and res.out == b"" and res.err == b"", describe(res)
    res = lab.run(["java"] + JAVA_OPTS + ["-cp", str(tmp_path), "Hello"], debug=False)
    assert res.rc == 0 and res.out == b"hi\n" and res.err == b"", describe(res)


def test_no_tls_loads_none_of_the_hook(lab, need_lib, java_hook, java_hook_classes, httpclient, haproxy_up,
                                       tag, tmp_path):
    """The hook injected, a JVM making no TLS runs none of its code: `java -version`, and a
    program using digests, UUID.randomUUID, SecureRandom and EC signatures (answered by the
    providers before LunarProvider's slot). The control: the first https loads it."""
    log = "-Xlog:class+load:stdout"
    res = lab.run(["java", log, "-XshowSettings:properties", "-version"], debug=False)
    assert res.rc == 0 and re.search(r"java\.security\.properties = /proc/\d+/fd/\d+", res.text_err), describe(res)
    assert "java.lang.Object" in res.text_out, "no class+load log\n" + describe(res)
    assert hook_classes(res.text_out) == [], "java -version loaded the hook\n" + describe(res)
    res = probe(lab, java_hook_classes, ["nontls"], jvm_opts=[log])
    assert res.rc == 0 and res.err == b"", describe(res)
    assert_injected(state_of(res)[0], java_hook, res)
    assert "java.security.MessageDigest" in res.text_out, "no class+load log\n" + describe(res)
    assert hook_classes(res.text_out) == [], "a JVM without TLS loaded the hook\n" + describe(res)
    loaded = str(tmp_path / "class-load.log")
    res = httpclient.run("GET", "https://api.example.test" + tag, jvm_opts=["-Xlog:class+load:file=" + loaded])
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, path=tag)
    with open(loaded) as f:
        got = hook_classes(f.read())
    assert {PROVIDER_CLASS, "dev.lunar.intercept.Hook", "dev.lunar.intercept.LunarContextSpi"} <= set(got), \
        "the first https did not load the hook: %s" % got


@pytest.mark.parametrize("how", ["argv", "argfile", "JDK_JAVA_OPTIONS", "JAVA_TOOL_OPTIONS"])
def test_programs_own_security_properties_are_left_alone(lab, need_lib, java_hook, java_hook_classes,
                                                         httpclient, haproxy_up, tag, tmp_path, how):
    """A program that sets java.security.properties itself (on its command line, in an
    @argfile, or in a variable the JDK reads options from) keeps its own properties and gets
    nothing of the hook: its https to a listed port goes straight to the origin over the
    JDK's own TLS, the proxy up."""
    own = tmp_path / "own.security"
    own.write_text("lunar.test.own=kept-%s\n" % how)
    option = "-Djava.security.properties=" + str(own)
    jvm_opts, env = [], None
    if how == "argv":
        jvm_opts = [option]
    elif how == "argfile":
        argfile = tmp_path / "java.args"
        argfile.write_text(option + "\n")
        jvm_opts = ["@" + str(argfile)]
    else:
        env = {how: option}
    res = probe(lab, java_hook_classes, ["state", "lunar.test.own"], jvm_opts=jvm_opts, env=env)
    assert res.rc == 0, describe(res)
    st = state_of(res)[0]
    assert st["own"] == {"lunar.test.own": "kept-" + how}, "the program's own property is lost\n" + describe(res)
    assert st["security_properties"] == str(own), describe(res)
    assert_not_injected(st, java_hook, res)
    res = httpclient.run("GET", "https://api.example.test" + tag, jvm_opts=jvm_opts, env=env)
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, path=tag)


def test_program_argument_starting_with_at_sign(lab, need_lib, java_hook, java_hook_classes):
    """`java Main @someone`: an argument of the program (not an @argfile: the launcher
    expands none after the main class) leaves the injection as it is."""
    res = probe(lab, java_hook_classes, ["state", "@someone"])
    assert res.rc == 0 and res.err == b"", describe(res)
    assert_injected(state_of(res)[0], java_hook, res)


def test_memfd_close_on_exec_and_not_inherited(lab, need_lib, java_hook, java_hook_classes):
    """The properties' memfd is the JVM's alone: close-on-exec (assert_injected), and a child
    the program starts (ProcessBuilder, `ls -l /proc/self/fd`) sees none."""
    res = probe(lab, java_hook_classes, ["child", "/bin/ls", "-l", "/proc/self/fd"])
    st, child = state_of(res)
    assert res.rc == 0, describe(res)
    assert_injected(st, java_hook, res)
    assert re.search(rb"\b2 -> ", child.out), "no descriptor listing from the child\n" + describe(res)
    assert MEMFD.encode() not in child.out, "the child inherited the memfd\n" + describe(res)


def test_launcher_that_runs_itself_again(lab, need_lib, java_hook, java_hook_classes, httpclient,
                                         haproxy_up, tag):
    """An LD_LIBRARY_PATH naming the JVM's directory (not first) makes the launcher exec itself
    again with its arguments, ours included: the new launcher replaces them by its own (the
    old memfd closed at the exec): one memfd, each option once, the hook for the new process;
    https diverted."""
    st = state_of(probe(lab, java_hook_classes, ["state"]))[0]
    server = os.path.join(st["java_home"], "lib", "server")
    assert os.path.exists(os.path.join(server, "libjvm.so")), server
    env = {"LD_LIBRARY_PATH": "/nonexistent-lunar:" + server}
    res = probe(lab, java_hook_classes, ["state"], env=env)
    assert res.rc == 0 and res.err == b"", describe(res)
    st = state_of(res)[0]
    # The launcher puts the JVM's directory first when it execs itself (the control).
    assert (st["ld_library_path"] or "").startswith(server + ":"), "the launcher did not exec itself\n%s" % st
    assert_injected(st, java_hook, res)
    res = httpclient.run("GET", "https://api.example.test" + tag, env=env)
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, path=tag)


def child_client(lab, classes, url, more=()):
    return ["java"] + JAVA_OPTS + lab.java_opts() + list(more) + ["-cp", classes, "JavaHookClient",
                                                                  "httpclient", "GET", url]


def test_child_java_with_the_preload_gets_its_own_hook(lab, need_lib, java_hook, java_hook_classes,
                                                       haproxy_up, tag):
    """A `java` started by a Java program, the preload inherited: injected anew, diverted."""
    res = probe(lab, java_hook_classes, ["child"] + child_client(lab, java_hook_classes,
                                                                 "https://api.example.test" + tag), debug=True)
    st, child = state_of(res)
    assert_ok(child)
    assert_injected(st, java_hook, res)
    assert_proxied_tls(one_echo(child), child, path=tag)


@pytest.mark.parametrize("copy", [False, True], ids=["environment", "copied-properties"])
def test_child_java_without_the_preload_is_inert(lab, need_lib, java_hook, java_hook_classes,
                                                 haproxy_up, tag, tmp_path, copy):
    """A child `java` without LD_PRELOAD gets nothing of the hook from its parent (nothing in
    the environment, the memfd not inherited): straight to the origin over its own TLS. Given
    a copy of the parent's properties and boot class path (a program passing its command
    line on), the provider loads but stays inert (the pid is the parent's): the same."""
    loaded = str(tmp_path / "child-class-load.log")
    cmd = child_client(lab, java_hook_classes, "https://api.example.test" + tag,
                       ["-Xlog:class+load:file=" + loaded])
    res = probe(lab, java_hook_classes, ["child", "--unset", "LD_PRELOAD"]
                + (["--copy-properties"] if copy else []) + cmd, debug=True)
    st, child = state_of(res)
    assert_ok(child)
    assert_injected(st, java_hook, res)
    assert_direct_tls(one_echo(child), child, path=tag)
    with open(loaded) as f:
        got = hook_classes(f.read())
    if copy:
        # The control: the copy made the child load the provider, which found another pid.
        assert PROVIDER_CLASS in got and "dev.lunar.intercept.LunarContextSpi" not in got, got
    else:
        assert got == [], got


@pytest.mark.parametrize("where", [
    "preload-first",
    "preload-after-options",
    "preload-without-config",
    "no-preload"])
def test_child_java_given_the_parents_jvm_arguments(lab, need_lib, java_hook, java_hook_classes,
                                                    haproxy_up, tag, where):
    """A Java program starting a JVM with its own JVM arguments (RuntimeMXBean's input
    arguments, the hook's two options among them), as a program relaunching itself or a
    benchmark harness forking does: the child runs, its request answered by the origin over
    TLS (through the proxy when the child has the preload and a proxy)."""
    cmd = child_client(lab, java_hook_classes, "https://api.example.test" + tag)
    at = 1 if where != "preload-after-options" else 1 + len(JAVA_OPTS)
    unset = {"no-preload": ["--unset", "LD_PRELOAD"],
             "preload-without-config": ["--unset", "LUNAR_PROXY_HOST"]}.get(where, [])
    res = probe(lab, java_hook_classes, ["child", "--pass-jvm-arguments", str(at)] + unset + cmd, debug=True)
    st, child = state_of(res)
    assert_injected(st, java_hook, res)
    assert_ok(child)
    e = one_echo(child)
    if unset:
        assert_direct_tls(e, child, path=tag)
    else:
        assert_proxied_tls(e, child, path=tag)


# ==== diverted: through the proxy as https ==============================================

def test_get(jclient, java_hook, haproxy_up, tag):
    res = jclient.run("GET", "https://api.example.test" + tag)
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, path=tag)


def test_get_httpclient_http1_without_alpn(httpclient, java_hook, haproxy_up, tag):
    """HttpClient forced to HTTP/1.1 offers no ALPN (the default HTTP_2 offers h2,http/1.1 and
    gets http/1.1 from the dressed engine): dressed the same."""
    res = httpclient.run("GET", "https://api.example.test" + tag, http1=True)
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, path=tag)


def test_post_json(jclient, java_hook, haproxy_up, tag):
    body = json.dumps({"client": jclient.api, "diverted": True}).encode()
    res = jclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/json"])
    assert_ok(res)
    e = one_echo(res)
    assert_proxied_tls(e, res, path=tag)
    assert e["method"] == "POST" and e["body_sha256"] == sha256(body)
    assert hdr(e, "content-type") == "application/json"


def test_post_2mib(jclient, java_hook, haproxy_up, tag):
    body = random.Random(11).randbytes(2 * 1024 * 1024)
    res = jclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/octet-stream"])
    assert_ok(res)
    e = one_echo(res)
    assert_proxied_tls(e, res, path=tag)
    assert (e["body_len"], e["body_sha256"]) == (len(body), sha256(body)), "body in the response"
    assert [r["body_sha256"] for r in jclient.lab.origin_log(contains=tag)] == [sha256(body)]


def test_download_2mib(jclient, java_hook, haproxy_up):
    n = 2 * 1024 * 1024 + 7
    res = jclient.run("GET", "https://api.example.test/bytes/%d" % n)
    assert_ok(res)
    assert sha256(res.out) == sha256(labmod.pattern_bytes(n)), describe(res)


def test_keepalive_one_proxy_connection(jclient, java_hook, haproxy_up, tag):
    """3 requests on one connection of the program: one connection at the proxy, three
    request ids."""
    res = jclient.run("GET", "https://api.example.test" + tag, repeat=3)
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 3, describe(res)
    rids = [assert_proxied_tls(e, res, path=tag) for e in es]
    assert len(set(rids)) == 3, "request ids repeat: %s" % rids
    assert len({hdr(e, "x-seen-src") for e in es}) == 1, "not one connection at the proxy\n" + describe(res)


def test_non_default_port(jclient, java_hook, haproxy_up, tag):
    res = jclient.run("GET", "https://api.example.test:8443" + tag, env=PORTS_8443)
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, lunar_host="api.example.test:8443", server=API_TLS_8443, path=tag)


def test_port_8443_not_listed_is_real_tls(jclient, java_hook, haproxy_up, tag):
    """8443 without LUNAR_INTERCEPT_PORTS: not dressed, the program's own TLS to the origin."""
    res = jclient.run("GET", "https://api.example.test:8443" + tag)
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, server=API_TLS_8443, path=tag)


def test_app_made_context(jclient, java_hook, haproxy_up, tag):
    """SSLContext.getInstance("TLS") with the program's own TrustManager (no
    javax.net.ssl properties): dressed too."""
    res = jclient.run("GET", "https://api.example.test" + tag, app_trust=True)
    assert_ok(res)
    assert_proxied_tls(one_echo(res), res, path=tag)


# ==== to the origin over real TLS: the hook's relay =======================================

def test_block_list_origin_over_real_tls(jclient, java_hook, haproxy_up, tag):
    body = b'{"blocked": true}'
    res = jclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/json"], env={"LUNAR_BLOCK_LIST": API})
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)


def test_proxy_down_origin_over_real_tls(jclient, java_hook, haproxy_down, tag):
    body = random.Random(7).randbytes(300000)
    res = jclient.run("POST", "https://api.example.test" + tag, data=body,
                      headers=["Content-Type: application/octet-stream"])
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)
    assert len(jclient.lab.origin_log(contains=tag)) == 1


@pytest.mark.parametrize("mode", ["error:2", "close", "close-head"])
def test_proxy_fault_replayed_at_origin(jclient, java_hook, testproxy, tag, mode):
    """The proxy got the request (x-lunar-scheme: https) and failed it: x-lunar-error, a close
    before any answer, a close in the middle of the request body. The program gets the
    origin's answer over real TLS, and the origin saw the request exactly as the program
    sends it without the library."""
    body = random.Random(13).randbytes(200000)
    headers = ["Content-Type: application/octet-stream", "X-Fault-Test: %s" % mode]
    url = "https://api.example.test" + tag
    base = jclient.run("POST", url + "/baseline", data=body, headers=headers, preload=False)
    assert_ok(base)
    testproxy.set_mode(mode)
    res = jclient.run("POST", url, data=body, headers=headers, env=TESTPROXY_ENV)
    assert_ok(res)
    e = one_echo(res)
    assert_direct_tls(e, res, path=tag)
    assert e["body_sha256"] == sha256(body)
    recs = [r for r in testproxy.origin_log(contains=tag) if r["path"] == tag]
    assert len(recs) == 1, "origin got %d requests, expected the one replay\n%s" % (len(recs), describe(res))
    want = [[k.lower(), v] for k, v in one_echo(base)["headers"]]
    got = [[k.lower(), v] for k, v in recs[0]["headers"]]
    assert got == want, "the origin did not see the program's own request:\n%s\n!=\n%s" % (got, want)
    seen = proxy_log_for(testproxy, tag)
    assert seen and h(seen[0], "x-lunar-scheme") == ["https"] and h(seen[0], "x-lunar-host") == [API], \
        "the request never reached the test proxy as https\n%s" % seen


def test_retry_after(jclient, java_hook, testproxy, tag):
    testproxy.set_mode("retry:0.3:2")
    t0 = time.time()
    res = jclient.run("GET", "https://api.example.test" + tag, env=TESTPROXY_ENV)
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


def test_cooldown(jclient, java_hook, testproxy, tag):
    """2 failures at the proxy (x-lunar-error) start a 3 s cooldown: the program's next
    connections go to the origin without the proxy, still over real TLS through the relay;
    every request gets the origin's answer."""
    testproxy.set_mode("error:2")
    res = jclient.run("GET", "https://api.example.test" + tag, repeat=6, interval=0.1, new_connection=True,
                      env=dict(TESTPROXY_ENV, **COOLDOWN_ENV))
    assert_ok(res)
    es = echoes(res)
    assert len(es) == 6, describe(res)
    for e in es:
        assert_direct_tls(e, res, path=tag)
    assert len(testproxy.origin_log(contains=tag)) == 6
    seen = proxy_log_for(testproxy, tag)
    assert len(seen) == 2, "expected the 2 failures at the proxy, then a cooldown: %d\n%s" % (
        len(seen), describe(res))
    assert [ln for ln in res.text_err.splitlines() if "cooldown" in ln], \
        "no cooldown in the library's log\n" + describe(res)


@pytest.mark.parametrize("host,pattern", [("untrusted.example.test", PKIX),
                                          ("wrongname.example.test", NO_NAME)])
def test_untrusted_origin_is_the_programs_error(jclient, java_hook, haproxy_up, tag, host, pattern):
    """HAProxy cannot verify the origin (x-lunar-error: 2); the preload moves the connection
    to the relay, whose real TLS with the program's own trust fails: the program sees the
    JDK's own error, and nothing reached the origin in plaintext."""
    before = len(labmod._json_lines(jclient.lab.origin_log_path))
    res = jclient.run("GET", "https://%s%s" % (host, tag))
    assert_program_error(res, pattern)
    recs = origin_records_since(jclient.lab, before)
    assert not [r for r in recs if tag in r.get("path", "")], "a request reached the origin"
    no_plaintext_at(recs, UNTRUSTED_TLS if host.startswith("untrusted") else API_TLS)


def test_untrusted_origin_after_proxy_error(jclient, java_hook, testproxy, tag):
    testproxy.set_mode("error:2")
    before = len(labmod._json_lines(jclient.lab.origin_log_path))
    res = jclient.run("GET", "https://untrusted.example.test" + tag, env=TESTPROXY_ENV)
    assert_program_error(res, PKIX)
    no_plaintext_at(origin_records_since(jclient.lab, before), UNTRUSTED_TLS)
    seen = proxy_log_for(testproxy, tag)
    assert seen and h(seen[0], "x-lunar-host") == ["untrusted.example.test"], "never reached the proxy"


def test_untrusted_with_its_ca_works(jclient, java_hook, haproxy_down, tag):
    """The same origin, its CA trusted by the program: it works through the relay (so the
    error above is the program's trust, not the relay)."""
    res = jclient.run("GET", "https://untrusted.example.test" + tag, ca=jclient.lab.untrusted_ca_file)
    assert_ok(res)
    e = one_echo(res)
    assert (e["scheme"], e["sni"], e["path"]) == ("https", "untrusted.example.test", tag), describe(res)


def test_app_made_context_its_own_trust_at_the_relay(jclient, java_hook, haproxy_down, tag):
    """Proxy down: the relay verifies with the app's own TrustManager (the lab CA): the
    origin answers; the untrusted origin is the app's own PKIX error."""
    res = jclient.run("GET", "https://api.example.test" + tag, app_trust=True)
    assert_ok(res)
    assert_direct_tls(one_echo(res), res, path=tag)
    res = jclient.run("GET", "https://untrusted.example.test" + tag, app_trust=True)
    assert_program_error(res, PKIX)
