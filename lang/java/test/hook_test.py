#!/usr/bin/env python3
"""The Java hook without the preload: python3 lang/java/test/hook_test.py [-v] [-k WORD]

This script plays the preload's part (lang/PROTOCOL.md sections 4-7) and Lunar Proxy's:
java runs with `-Xbootclasspath/a:<jar> -Djava.security.properties=<file>` right after its
name, the file made as the preload makes it (`security_properties`: the provider list of
this `java`'s own conf/security/java.security with dev.lunar.intercept.LunarProvider right
before SunJSSE, the rest shifted by one, and `lunar.intercept.hook=v1 <pid> <token> <ports>`;
pid = the JVM's own, through `sh -c '... exec java ...'` and `$$`), and every listed-port
connection lands on one local server here, which looks at the first bytes:

- a TLS ClientHello (0x16): the connection was NOT dressed (or is the relay's own real
  TLS): the server is the TLS origin (a self-signed certificate made with openssl at start,
  trusted by the program through -Djavax.net.ssl.trustStore) and answers an HTTP echo;
- the marker line `LUNAR-HOOK/1 <token> <relay-port> <conn-id>\r\n`: the connection was
  dressed; the server checks the marker and, by the request's path, either answers as the
  proxy would (plain HTTP, `"via": "proxy"`), or plays the failsafe: connects to the hook's
  relay, sends the greeting and the request bytes it holds, and pipes both ways (the relay
  then makes real TLS back to this server, which answers as the origin, `"via": "origin"`).

Beyond the connections: `java -version` prints the same with the hook's options; the
provider list is the JDK's with LunarIntercept before SunJSSE; a JVM making no TLS loads
none of dev.lunar.intercept (-Xlog:class+load); properties that are not this JVM's (another
pid, v2, a bad token, no ports, an empty or no hook line) leave the provider loaded but
inert.

The `java` on PATH is the one tested (its java.home and release from
`java -XshowSettings:properties -version`), e.g. Temurin 25:
`PATH=/usr/lib/jvm/temurin-25-jdk-amd64/bin:$PATH python3 lang/java/test/hook_test.py`. From
JDK 24 the relay cannot read an HttpsURLConnection's own HostnameVerifier (unless the
program opened sun.net.www.protocol.https) and the default one decides: the own-verifier
check expects that there.

Needs java, javac, jar, keytool and openssl. Exit status 0 when every check passed.
"""
import argparse
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA_DIR = os.path.dirname(HERE)
TOKEN = secrets.token_hex(16)
JAVA_OPTS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"]
PASSWORD = "changeit"


def pattern_bytes(n):
    pat = bytes(range(251))
    return (pat * (n // 251 + 1))[:n]


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the preload + proxy + origin stand-in ---------------------------------------------------

def pump(a, b):
    """Copies a to b until a ends, then shuts both down (one direction of a relay)."""
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for x in (a, b):
        try:
            x.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server:
    """One listener per (address, port): TLS origin or dressed-connection peer by first byte."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.ctx.sni_callback = self._sni
        self.events = []
        self.lock = threading.Lock()
        self.listeners = []
        self.sni = {}

    def _sni(self, sslsock, name, ctx):
        self.sni[id(sslsock)] = name

    def listen(self, ip, port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        s.listen(64)
        self.listeners.append(s)
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def record(self, **ev):
        with self.lock:
            self.events.append(ev)

    def take(self):
        with self.lock:
            ev, self.events = self.events, []
            return ev

    def _accept(self, s):
        while True:
            try:
                c, peer = s.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, s.getsockname()), daemon=True).start()

    def _serve(self, c, local):
        try:
            c.settimeout(15)
            first = c.recv(1, socket.MSG_PEEK)
            if not first:
                c.close()
                return
            if first == b"\x16":
                self._origin(c, local)
            else:
                self._dressed(c, local)
        except Exception as e:  # noqa: BLE001 - a test server records, never dies
            self.record(kind="server-error", error=repr(e), trace=traceback.format_exc())
            try:
                c.close()
            except OSError:
                pass

    # -- TLS origin
    def _origin(self, c, local):
        try:
            t = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.record(kind="tls", local=list(local), error=str(e))
            c.close()
            return
        sni = self.sni.pop(id(t), None)
        self.record(kind="tls", local=list(local), sni=sni, alpn=t.selected_alpn_protocol(),
                    version=t.version())
        self._http(t, b"", "origin", {"sni": sni, "local": list(local)})

    # -- a dressed connection: marker, then proxy or failsafe
    def _dressed(self, c, local):
        chunk = c.recv(65536)
        end = chunk.find(b"\r\n")
        line = chunk[:end].decode("latin-1") if end >= 0 else chunk[:200].decode("latin-1")
        fields = line.split(" ")
        ok = (end >= 0 and len(fields) == 4 and fields[0] == "LUNAR-HOOK/1" and fields[1] == TOKEN
              and fields[2].isdigit() and fields[3].isdigit())
        self.record(kind="marker", local=list(local), line=line, ok=ok, whole_in_first_read=end >= 0)
        if not ok:
            c.close()
            return
        relay_port, conn_id = int(fields[2]), fields[3]
        rest = chunk[end + 2:]
        self._http(c, rest, "proxy", {"local": list(local)}, relay=(relay_port, conn_id))

    def _http(self, c, buf, via, extra, relay=None):
        n = 0
        while True:
            while b"\r\n\r\n" not in buf:
                data = c.recv(65536)
                if not data:
                    c.close()
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = [ln.split(":", 1) for ln in lines[1:] if ":" in ln]
            hmap = {k.strip().lower(): v.strip() for k, v in headers}
            if relay and "/failsafe" in path:
                # The preload's move to the origin: greet the relay, hand it the request.
                self._failsafe(c, relay, head + b"\r\n\r\n" + buf, path)
                return
            length = int(hmap.get("content-length", "0"))
            while len(buf) < length:
                data = c.recv(65536)
                if not data:
                    c.close()
                    return
                buf += data
            body, buf = buf[:length], buf[length:]
            answer = {"via": via, "method": method, "path": path, "n": n, "body_len": len(body),
                      "body_sha256": sha256(body), "host": hmap.get("host")}
            answer.update(extra)
            if relay and "/wrongtoken" in path:
                answer["probes"] = self._probe_relay(relay)
            if path.startswith("/bytes/"):
                payload = pattern_bytes(int(path.split("/")[2]))
            else:
                payload = json.dumps(answer).encode()
            self.record(kind="request", via=via, path=path, method=method, body_len=len(body))
            close = hmap.get("connection", "").lower() == "close"
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                      % (len(payload), b"Connection: close\r\n" if close else b"") + payload)
            if close:
                c.close()
                return
            n += 1

    def _failsafe(self, c, relay, pending, path):
        port, conn_id = relay
        r = socket.create_connection(("127.0.0.1", port), timeout=15)
        r.sendall(("LUNAR-RELAY/1 %s %s\r\n" % (TOKEN, conn_id)).encode() + pending)
        self.record(kind="failsafe", path=path)
        r.settimeout(None)
        c.settimeout(None)

        t = threading.Thread(target=pump, args=(r, c), daemon=True)
        t.start()
        pump(c, r)
        t.join(20)
        r.close()
        c.close()

    @staticmethod
    def _probe_relay(relay):
        """Greetings the relay must refuse: it closes at once, nothing else."""
        port, conn_id = relay
        out = {}
        for name, data in [("wrong_token", "LUNAR-RELAY/1 %s %s\r\n" % ("0" * 32, conn_id)),
                           ("unknown_id", "LUNAR-RELAY/1 %s 987654321\r\n" % TOKEN),
                           ("overlong", "LUNAR-RELAY/1 " + "9" * 300),
                           ("not_a_greeting", "GET / HTTP/1.1\r\n\r\n")]:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            t0 = time.time()
            try:
                s.sendall(data.encode())
                got = s.recv(100)
                out[name] = "closed" if got == b"" else "answered %r" % got
            except ConnectionResetError:
                out[name] = "closed"
            except socket.timeout:
                out[name] = "still open after 5 s"
            except OSError as e:
                out[name] = "closed" if e.errno in (32, 104) else repr(e)
            out[name + "_seconds"] = round(time.time() - t0, 2)
            s.close()
        return out


def serve_connect_proxy(log):
    """An HTTP proxy that only does CONNECT; returns its port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)

    def handle(c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d:
                c.close()
                return
            buf += d
        target = buf.split(b" ")[1].decode()
        log.append(target)
        host, port = target.rsplit(":", 1)
        u = socket.create_connection((host, int(port)))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=pump, args=(u, c), daemon=True).start()
        pump(c, u)

    def accept():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return s.getsockname()[1]


# ---- running java ----------------------------------------------------------------------------

PROVIDER = "dev.lunar.intercept.LunarProvider"
HOOK_PROPERTY = "lunar.intercept.hook"
SUN_JSSE = ("SunJSSE", "sun.security.ssl.SunJSSE", "com.sun.net.ssl.internal.ssl.Provider")


def split_property(line):
    """A java.util.Properties line as (key, raw value), as src/inject/java_security.rs."""
    end = 0
    while end < len(line):
        c = line[end]
        if c == "\\":
            end += 2
        elif c in "=: \t\f":
            break
        else:
            end += 1
    end = min(end, len(line))
    rest = line[end:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:]
    return line[:end], rest.lstrip(" \t\f")


def security_properties(master, hook_line):
    """What the preload gives the JVM (src/inject/java_security.rs, lang/PROTOCOL.md section 7):
    the JDK's providers from SunJSSE on, LunarProvider in SunJSSE's place, and the hook's
    line (none when hook_line is None). None where the preload gives nothing (no SunJSSE, an
    include, overriding turned off, a provider value spread over lines)."""
    providers = {}
    for line in master.splitlines():
        line = line.lstrip()
        if not line or line[0] in "#!":
            continue
        key, value = split_property(line)
        trailing = len(value) - len(value.rstrip("\\"))
        if trailing % 2 == 1 and (key.startswith("security.") or key == "include"):
            return None
        if key == "include" or (key == "security.overridePropertiesFile" and value.strip() == "false"):
            return None
        if key.startswith("security.provider."):
            index = key[len("security.provider."):]
            if not index.isdigit() or int(index) == 0:
                return None
            providers[int(index)] = value.rstrip()
    listed = []
    while len(listed) + 1 in providers:
        listed.append(providers[len(listed) + 1])
    jsse = [at for at, value in enumerate(listed) if (value.split() or [""])[0] in SUN_JSSE]
    if not jsse:
        return None
    out = ["# liblunar_intercept: the JDK's providers, Lunar's before SunJSSE",
           "security.provider.%d=%s" % (jsse[0] + 1, PROVIDER)]
    out += ["security.provider.%d=%s" % (at + 2, value) for at, value in enumerate(listed) if at >= jsse[0]]
    if hook_line is not None:
        out.append("%s=%s" % (HOOK_PROPERTY, hook_line))
    return "\n".join(out) + "\n"


def java_settings():
    """java.home and the feature release (17, 25, ...) of the `java` on PATH, as it says."""
    r = subprocess.run(["java", "-XshowSettings:properties", "-version"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, check=True)
    props = dict(ln.strip().partition(" = ")[::2] for ln in r.stdout.decode("latin-1").splitlines())
    return props["java.home"], int(props["java.specification.version"].split(".")[-1])


class Env:
    def __init__(self, tmp):
        self.tmp = tmp
        self.jar_dir = os.path.join(tmp, "hook")
        self.classes = os.path.join(tmp, "classes")

    def setup(self):
        r = subprocess.run([os.path.join(JAVA_DIR, "build.sh"), self.jar_dir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode != 0 or r.stdout:
            raise SystemExit("build.sh failed or printed something:\n" + r.stdout.decode())
        self.jar = os.path.join(self.jar_dir, "lunar-java-hook.jar")
        self.java_home, self.feature = java_settings()
        with open(os.path.join(self.java_home, "conf", "security", "java.security"), encoding="latin-1") as f:
            self.master = f.read()
        self.runs = 0
        os.makedirs(self.classes)
        subprocess.run(["javac", "-d", self.classes, os.path.join(HERE, "HookClient.java")], check=True)
        t = self.tmp
        self.cert, self.key = os.path.join(t, "origin.pem"), os.path.join(t, "origin.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
        other_cert, other_key = os.path.join(t, "other.pem"), os.path.join(t, "other.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", other_key, "-out", other_cert, "-days", "2", "-subj", "/CN=other")
        self.trust = os.path.join(t, "trust.p12")
        self.other_trust = os.path.join(t, "other-trust.p12")
        self.client_keys = os.path.join(t, "client-keys.p12")
        keytool("-importcert", "-noprompt", "-alias", "origin", "-file", self.cert, "-keystore", self.trust)
        keytool("-importcert", "-noprompt", "-alias", "other", "-file", other_cert, "-keystore", self.other_trust)
        keytool("-genkeypair", "-alias", "client", "-keyalg", "EC", "-dname", "CN=client", "-keystore",
                self.client_keys)
        self.port = free_port()      # listed: dressed
        self.unlisted = free_port()  # not listed: real TLS
        self.server = Server(self.cert, self.key)
        for ip in ("127.0.0.1", "127.0.0.2"):
            self.server.listen(ip, self.port)
            self.server.listen(ip, self.unlisted)
        self.ports = "%d,8443" % self.port
        self.tunnels = []
        self.connect_proxy = serve_connect_proxy(self.tunnels)

    def java(self, argv, hook=True, trust=True, hook_args=None, timeout=60):
        """java ARGV through `sh -c`, with the preload's two options after its name when hook:
        the properties of security_properties() with `lunar.intercept.hook=HOOK_ARGS` (default
        `v1 @PID@ TOKEN PORTS`; @PID@ becomes the JVM's pid, the shell's `$$` it execs into;
        hook_args=False: no such line at all)."""
        opts = list(JAVA_OPTS)
        if trust:
            opts += ["-Djavax.net.ssl.trustStore=" + self.trust, "-Djavax.net.ssl.trustStoreType=PKCS12",
                     "-Djavax.net.ssl.trustStorePassword=" + PASSWORD]
        words = ["exec", "java"]
        prelude = ""
        if hook:
            args = hook_args if hook_args is not None else "v1 @PID@ %s %s" % (TOKEN, self.ports)
            props = security_properties(self.master, args if args is not False else None)
            if props is None:
                raise SystemExit("this JDK's java.security is one the preload leaves alone")
            self.runs += 1
            template = os.path.join(self.tmp, "java-%d.security.in" % self.runs)
            with open(template, "w") as f:
                f.write(props)
            made = template[:-len(".in")]
            prelude = "sed \"s/@PID@/$$/\" %s > %s && " % (shlex.quote(template), shlex.quote(made))
            words += [shlex.quote("-Xbootclasspath/a:" + self.jar),
                      shlex.quote("-Djava.security.properties=" + made)]
        words += [shlex.quote(a) for a in opts + argv]
        script = prelude + " ".join(words)
        t0 = time.time()
        p = subprocess.run(["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        return Run(p.returncode, p.stdout, p.stderr, script, time.time() - t0)

    def client(self, mode, url, *more, **kw):
        return self.java(["-cp", self.classes, "HookClient", mode, url] + list(more), **kw)


class Run:
    def __init__(self, rc, out, err, script, elapsed):
        self.rc, self.out, self.err, self.script, self.elapsed = rc, out, err, script, elapsed

    @property
    def bodies(self):
        return [json.loads(ln) for ln in self.out.decode("latin-1").splitlines()
                if ln.startswith("{")]

    def _line(self, prefix):
        for ln in self.out.decode("latin-1").splitlines():
            if ln.startswith(prefix):
                return json.loads(ln[len(prefix):])
        return None

    @property
    def info(self):
        return self._line("INFO ")

    @property
    def providers(self):
        return self._line("PROVIDERS ")

    @property
    def loaded(self):
        """Our classes the JVM loaded (-Xlog:class+load on stdout)."""
        return sorted(set(re.findall(r"\[class,load\] (dev\.lunar\.intercept\.[\w$]+) ", self.out.decode("latin-1"))))

    def __str__(self):
        return "script: %s\nrc: %s\nstdout: %r\nstderr: %s" % (
            self.script, self.rc, self.out[:800], self.err.decode("latin-1")[-3000:])


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def keytool(*args):
    subprocess.run(["keytool"] + list(args) + ["-storetype", "PKCS12", "-storepass", PASSWORD],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---- the checks ------------------------------------------------------------------------------

class Failure(Exception):
    pass


def check(cond, what, run=None):
    if not cond:
        raise Failure(what + ("\n" + str(run) if run is not None else ""))


def kinds(events, kind):
    return [e for e in events if e["kind"] == kind]


def markers_ok(ev, n, run):
    m = kinds(ev, "marker")
    check(len(m) == n, "expected %d dressed connection(s), saw %d: %s" % (n, len(m), m), run)
    for e in m:
        check(e["ok"], "bad marker %r" % e["line"], run)
        check(e["whole_in_first_read"], "the marker did not arrive whole first", run)


def failed_tries_ok(ev, run):
    """A request that fails at the relay, after it was written: the JDK's clients retry an
    idempotent one once then (lang/java/README.md, known limits): one or two dressed tries."""
    tries = len(kinds(ev, "marker"))
    check(1 <= tries <= 2, "tries: %s" % kinds(ev, "marker"), run)
    markers_ok(ev, tries, run)


def no_markers(ev, run):
    check(not kinds(ev, "marker"), "a connection was dressed: %s" % kinds(ev, "marker"), run)


def t_java_version_unchanged(env):
    base = env.java(["-version"], hook=False, trust=False)
    withhook = env.java(["-version"], trust=False)
    check(base.rc == 0 and withhook.rc == 0, "java -version failed", withhook)
    check(withhook.err == base.err and withhook.out == base.out == b"",
          "java -version output differs with the hook:\n%r\n%r" % (base.err, withhook.err))


def t_provider_list(env):
    """The JVM's providers with the hook: the JDK's own, in order, LunarIntercept right before
    SunJSSE; SSLContext.getDefault() comes from it, and from SunJSSE without the hook."""
    base = env.java(["-cp", env.classes, "HookClient", "providers"], hook=False)
    r = env.java(["-cp", env.classes, "HookClient", "providers"])
    check(base.rc == 0 and r.rc == 0 and r.err == b"", "providers", r)
    names = base.providers["providers"]
    check("SunJSSE" in names and "LunarIntercept" not in names, "the JDK's own list: %s" % names, base)
    at = names.index("SunJSSE")
    check(r.providers["providers"] == names[:at] + ["LunarIntercept"] + names[at:],
          "the list with the hook: %s, without: %s" % (r.providers["providers"], names), r)
    check((base.providers["context_provider"], r.providers["context_provider"]) == ("SunJSSE", "LunarIntercept"),
          "SSLContext.getDefault(): %s, without the hook: %s" % (r.providers, base.providers), r)
    check(r.providers["hook_property"] and not base.providers["hook_property"], "the hook's property", r)


def t_no_tls_loads_nothing(env):
    """A JVM that makes no TLS runs none of the hook: `java -version`, and a program using
    digests, UUID.randomUUID, SecureRandom and EC signatures (answered by the providers before
    LunarProvider's slot). Positive control: the first https loads the provider."""
    log = ["-Xlog:class+load:stdout"]
    r = env.java(log + ["-version"], trust=False)
    check(r.rc == 0 and b"java.lang.Object" in r.out, "-Xlog:class+load shows nothing", r)
    check(r.loaded == [], "java -version loaded %s" % r.loaded, r)
    r = env.java(log + ["-cp", env.classes, "HookClient", "nontls"])
    check(r.rc == 0 and b"nontls ok" in r.out and b"java.security.MessageDigest" in r.out, "nontls", r)
    check(r.loaded == [], "a program without TLS loaded %s" % r.loaded, r)
    r = env.java(log + ["-cp", env.classes, "HookClient", "httpclient", "https://localhost:%d/proxy/loaded" % env.port])
    ev = env.server.take()
    check(r.rc == 0, "https with -Xlog:class+load", r)
    markers_ok(ev, 1, r)
    check({PROVIDER, "dev.lunar.intercept.Hook", "dev.lunar.intercept.LunarContextSpi"} <= set(r.loaded),
          "the first https did not load the hook: %s" % r.loaded, r)


def t_inert_when_pid_or_args_wrong(env):
    """The provider is loaded (it is listed) but serves nothing: SSLContext.getDefault() is
    SunJSSE's, the program goes to the origin over its own TLS. One thing wrong each time."""
    url = "https://localhost:%d/proxy" % env.port
    good = ("v1", "@PID@", TOKEN, env.ports)
    cases = {"pid 1": ("v1", "1", TOKEN, env.ports), "v2": ("v2",) + good[1:],
             "short token": good[:2] + (TOKEN[:31],) + good[3:],
             "upper-case token": good[:2] + ("A" * 32,) + good[3:],
             "no ports": good[:3] + ("",), "empty": "", "absent": False}
    for what, args in cases.items():
        args = " ".join(args) if isinstance(args, tuple) else args
        env.server.take()
        r = env.client("httpclient", url, "--providers", hook_args=args)
        ev = env.server.take()
        check(r.rc == 0 and r.err == b"", "program failed or printed with an inert hook (%s)" % what, r)
        no_markers(ev, r)
        check(r.bodies[0]["via"] == "origin", "not straight to the origin over TLS (%s)" % what, r)
        p = r.providers
        check(p["context_provider"] == "SunJSSE" and "LunarIntercept" in p["providers"],
              "%s: not the inert provider: %s" % (what, p), r)
    # The control: the same run with the right arguments is dressed.
    r = env.client("httpclient", url, "--providers", hook_args=" ".join(good))
    ev = env.server.take()
    markers_ok(ev, 1, r)
    check(r.providers["context_provider"] == "LunarIntercept", "control: %s" % r.providers, r)


def t_httpclient_get_via_proxy(env):
    r = env.client("httpclient", "https://localhost:%d/proxy/get?q=1" % env.port)
    ev = env.server.take()
    check(r.rc == 0 and r.err == b"", "HttpClient GET failed", r)
    markers_ok(ev, 1, r)
    b = r.bodies[0]
    check(b["via"] == "proxy" and b["path"] == "/proxy/get?q=1", "answer %s" % b, r)
    check(b["host"] == "localhost:%d" % env.port, "Host header %r" % b["host"], r)
    info = r.info
    # HttpClient asks ALPN h2,http/1.1 by default: the dressed engine says http/1.1.
    check(info["version"] == "HTTP_1_1" and info["protocol"] == "TLSv1.3", "session %s" % info, r)
    check(info["peer_cert"] == "CN=localhost", "peer certificate %s" % info, r)
    check(not kinds(ev, "tls"), "real TLS seen for a dressed request", r)


def t_httpclient_post_and_download_2mib(env):
    body = os.urandom(2 * 1024 * 1024)
    f = os.path.join(env.tmp, "body.bin")
    with open(f, "wb") as fh:
        fh.write(body)
    r = env.client("httpclient", "https://localhost:%d/proxy/post" % env.port, "--data-file", f)
    ev = env.server.take()
    check(r.rc == 0, "POST failed", r)
    markers_ok(ev, 1, r)
    b = r.bodies[0]
    check((b["method"], b["body_len"], b["body_sha256"]) == ("POST", len(body), sha256(body)),
          "body at the proxy %s" % b, r)
    n = 2 * 1024 * 1024 + 7
    r = env.client("httpclient", "https://localhost:%d/bytes/%d" % (env.port, n))
    ev = env.server.take()
    check(r.rc == 0 and sha256(r.out[:n]) == sha256(pattern_bytes(n)), "2 MiB download", r)
    markers_ok(ev, 1, r)


def t_httpclient_keepalive(env):
    r = env.client("httpclient", "https://localhost:%d/proxy/ka" % env.port, "--repeat", "3")
    ev = env.server.take()
    check(r.rc == 0, "3 requests failed", r)
    markers_ok(ev, 1, r)
    check([b["n"] for b in r.bodies] == [0, 1, 2], "not one connection: %s" % r.bodies, r)


def t_urlconnection_via_proxy(env):
    r = env.client("urlconn", "https://localhost:%d/proxy/url" % env.port, "--repeat", "2")
    ev = env.server.take()
    check(r.rc == 0 and r.err == b"", "HttpsURLConnection failed", r)
    markers_ok(ev, 1, r)
    check([(b["via"], b["n"]) for b in r.bodies] == [("proxy", 0), ("proxy", 1)], "answers", r)
    check(r.info["peer_cert"] == "CN=localhost", "getServerCertificates: %s" % r.info, r)


def t_socket_via_proxy(env):
    r = env.client("socket", "https://localhost:%d/proxy/socket" % env.port)
    ev = env.server.take()
    check(r.rc == 0, "SSLSocket failed", r)
    markers_ok(ev, 1, r)
    check(r.bodies[0]["via"] == "proxy", "answer", r)
    check(r.info["listener_fired"] and r.info["alpn"] == "", "session: %s" % r.info, r)


def t_failsafe_reaches_origin_over_real_tls(env):
    for mode in ("httpclient", "urlconn", "socket"):
        r = env.client(mode, "https://localhost:%d/failsafe/%s" % (env.port, mode))
        ev = env.server.take()
        check(r.rc == 0 and r.err == b"", "%s through the relay failed" % mode, r)
        markers_ok(ev, 1, r)
        check(len(kinds(ev, "failsafe")) == 1, "no failsafe", r)
        tls = kinds(ev, "tls")
        # The SNI the program's own socket would send: HttpClient and HttpsURLConnection name
        # the host; a bare SSLSocket to "localhost" sends none (the JDK sends no dotless name).
        sni = None if mode == "socket" else "localhost"
        check(len(tls) == 1 and tls[0].get("sni") == sni and tls[0].get("alpn") == "http/1.1",
              "the relay's TLS at the origin: %s" % tls, r)
        b = r.bodies[0]
        check(b["via"] == "origin" and b["path"] == "/failsafe/" + mode, "answer %s" % b, r)
        if mode == "httpclient":
            # After the relay, certificate queries answer with the real session's values.
            check(r.info["peer_cert"] == "CN=localhost", "session after the relay %s" % r.info, r)


def t_failsafe_post_body_intact(env):
    body = os.urandom(300000)
    f = os.path.join(env.tmp, "fs-body.bin")
    with open(f, "wb") as fh:
        fh.write(body)
    for mode in ("httpclient", "urlconn"):
        r = env.client(mode, "https://localhost:%d/failsafe/post" % env.port, "--data-file", f)
        ev = env.server.take()
        check(r.rc == 0, "%s POST through the relay" % mode, r)
        b = r.bodies[0]
        check(b["via"] == "origin" and b["body_sha256"] == sha256(body), "body at the origin %s" % b, r)


def t_untrusted_origin_is_the_programs_error(env):
    for mode in ("httpclient", "urlconn", "socket"):
        r = env.client(mode, "https://localhost:%d/failsafe/untrusted" % env.port, trust=False)
        ev = env.server.take()
        err = r.err.decode("latin-1")
        check(r.rc == 3 and "SSLHandshakeException" in err and "PKIX path building failed" in err,
              "%s: not the program's own PKIX error" % mode, r)
        # The error comes at the first read, after the request was written (a dressed handshake
        # cannot fail), and both JDK clients retry an idempotent request once then (HttpClient:
        # a connection failing before any byte of the answer, after the ALPN step; and
        # HttpURLConnection: any failure reading the answer): two tries, two errors. A bare
        # SSLSocket tries once.
        tries = len(kinds(ev, "marker"))
        markers_ok(ev, tries if mode != "socket" else 1, r)
        check(1 <= tries <= 2, "tries: %s" % kinds(ev, "marker"), r)
        check(not kinds(ev, "request"), "a request reached the origin: %s" % kinds(ev, "request"), r)
        tls = kinds(ev, "tls")
        check(len(tls) == len(kinds(ev, "marker")) and all("error" in t for t in tls),
              "the origin saw a completed handshake: %s" % tls, r)


def t_wrong_name_is_the_programs_error(env):
    # 127.0.0.2 is not in the certificate: the endpoint identification the program set (HTTPS)
    # travels to the relay.
    for mode in ("httpclient", "urlconn"):
        r = env.client(mode, "https://127.0.0.2:%d/failsafe/wrongname" % env.port)
        ev = env.server.take()
        err = r.err.decode("latin-1")
        check(r.rc == 3 and "SSLHandshakeException" in err and "127.0.0.2" in err,
              "%s: not the program's own name error" % mode, r)
        check(not kinds(ev, "request"), "a request reached the origin", r)


def t_urlconnection_own_hostname_verifier(env):
    """An HttpsURLConnection with a HostnameVerifier of its own checks names after the handshake
    (certificate names first, then its verifier). Dressed, the synthetic certificate names the
    host; at the relay the check runs again on the real certificate, with the connection's own
    verifier read from a private field of the JDK: by reflection where the program opened the
    package, else sun.misc.Unsafe up to JDK 23; from JDK 24 neither, and the default verifier
    decides (a real certificate without the host's name fails, as with a strict verifier)."""
    for verifier in ("accept", "reject"):
        r = env.client("urlconn", "https://127.0.0.2:%d/proxy/hv" % env.port, "--verifier", verifier)
        env.server.take()
        check(r.rc == 0 and r.bodies[0]["via"] == "proxy", "proxied with a %s verifier" % verifier, r)
    # Without the hook (a port not listed) the program says at the handshake what it must
    # say through the relay: its verifier decides.
    base_accept = env.client("urlconn", "https://127.0.0.2:%d/direct/hv" % env.unlisted, "--verifier", "accept")
    check(base_accept.rc == 0 and base_accept.bodies[0]["via"] == "origin", "baseline, accepting", base_accept)
    base = env.client("urlconn", "https://127.0.0.2:%d/direct/hv" % env.unlisted, "--verifier", "reject")
    check(base.rc == 3 and b"should be <127.0.0.2>" in base.err, "baseline, rejecting", base)
    env.server.take()
    # The origin's certificate lacks 127.0.0.2: the verifier decides, as without the hook...
    r = env.client("urlconn", "https://127.0.0.2:%d/failsafe/hv" % env.port, "--verifier", "accept")
    ev = env.server.take()
    if env.feature <= 23:
        markers_ok(ev, 1, r)
        check(r.rc == 0 and r.err == b"" and r.bodies[0]["via"] == "origin", "relay with an accepting verifier", r)
    else:
        # ... up to JDK 23. From 24 the default verifier: the JDK's own refusal, nothing sent.
        failed_tries_ok(ev, r)
        check(r.rc == 3 and r.err == base.err,
              "JDK %d: relay with an accepting verifier: not the default verifier's refusal" % env.feature, r)
        check(not kinds(ev, "request"), "a request reached the origin", r)
    # ... and on every JDK when the program opened the package itself.
    opened = ["--add-opens", "java.base/sun.net.www.protocol.https=ALL-UNNAMED"]
    r = env.java(opened + ["-cp", env.classes, "HookClient", "urlconn",
                           "https://127.0.0.2:%d/failsafe/hv-opened" % env.port, "--verifier", "accept"])
    ev = env.server.take()
    markers_ok(ev, 1, r)
    check(r.rc == 0 and r.err == b"" and r.bodies[0]["via"] == "origin",
          "relay with an accepting verifier, the package opened by the program", r)
    r = env.client("urlconn", "https://127.0.0.2:%d/failsafe/hv" % env.port, "--verifier", "reject")
    ev = env.server.take()
    failed_tries_ok(ev, r)
    check(r.rc == 3 and r.err == base.err, "relay with a rejecting verifier: not the JDK's own error", r)
    check(not kinds(ev, "request"), "a request reached the origin", r)


def t_relay_refuses_bad_greetings(env):
    r = env.client("httpclient", "https://localhost:%d/wrongtoken" % env.port)
    env.server.take()
    check(r.rc == 0, "request failed", r)
    p = r.bodies[0]["probes"]
    for name in ("wrong_token", "unknown_id", "overlong", "not_a_greeting"):
        check(p[name] == "closed" and p[name + "_seconds"] < 1.0, "relay on %s: %s" % (name, p), r)


def t_app_context_dressed(env):
    url = "https://localhost:%d/proxy/app" % env.port
    r = env.client("httpclient", url, "--app-trust", env.trust, trust=False)
    ev = env.server.take()
    check(r.rc == 0, "app-made SSLContext failed", r)
    markers_ok(ev, 1, r)
    check(r.bodies[0]["via"] == "proxy", "answer", r)
    # Its failsafe verifies with the app's own TrustManager: trusted...
    r = env.client("urlconn", "https://localhost:%d/failsafe/app" % env.port, "--app-trust", env.trust,
                   trust=False)
    ev = env.server.take()
    check(r.rc == 0 and r.bodies[0]["via"] == "origin", "app context through the relay", r)
    # ... and untrusted when the app's store lacks the origin (the JVM default trusts it here).
    r = env.client("httpclient", "https://localhost:%d/failsafe/app-untrusted" % env.port,
                   "--app-trust", env.other_trust)
    ev = env.server.take()
    err = r.err.decode("latin-1")
    check(r.rc == 3 and "PKIX path building failed" in err, "the app's own trust not used", r)
    check(not kinds(ev, "request"), "a request reached the origin", r)


def t_not_dressed(env):
    # A port not listed.
    r = env.client("httpclient", "https://localhost:%d/unlisted" % env.unlisted)
    ev = env.server.take()
    check(r.rc == 0 and r.bodies[0]["via"] == "origin", "unlisted port", r)
    no_markers(ev, r)
    # ALPN offering h2 only.
    r = env.client("socket", "https://localhost:%d/h2only" % env.port, "--alpn", "h2")
    ev = env.server.take()
    no_markers(ev, r)
    check(kinds(ev, "tls"), "no real TLS for an h2-only socket", r)
    # A context with client keys.
    r = env.client("httpclient", "https://localhost:%d/clientcert" % env.port, "--app-trust", env.trust,
                   "--client-keys", env.client_keys)
    ev = env.server.take()
    check(r.rc == 0 and r.bodies[0]["via"] == "origin", "client-certificate context", r)
    no_markers(ev, r)
    # The default context with a key store named by javax.net.ssl.keyStore.
    r = env.java(["-Djavax.net.ssl.keyStore=" + env.client_keys, "-Djavax.net.ssl.keyStoreType=PKCS12",
                  "-Djavax.net.ssl.keyStorePassword=" + PASSWORD, "-cp", env.classes, "HookClient",
                  "httpclient", "https://localhost:%d/default-keys" % env.port])
    ev = env.server.take()
    check(r.rc == 0 and r.bodies[0]["via"] == "origin", "default context with a key store", r)
    no_markers(ev, r)


def t_tunnels_and_own_sockets_not_dressed(env):
    # HttpClient through an HTTP proxy's CONNECT tunnel: its engine never learns it is tunnelled
    # but for its caller; dressed, the marker and the plaintext would go through the tunnel.
    r = env.client("httpclient", "https://localhost:%d/tunnel" % env.port, "--proxy",
                   "127.0.0.1:%d" % env.connect_proxy)
    ev = env.server.take()
    check(r.rc == 0 and r.bodies[0]["via"] == "origin", "HttpClient through a tunnel", r)
    no_markers(ev, r)
    check(env.tunnels and env.tunnels[-1] == "localhost:%d" % env.port, "the tunnel was not used", r)
    # An SSLSocket layered over the caller's own socket.
    r = env.client("socket", "https://localhost:%d/layered" % env.port, "--layered")
    ev = env.server.take()
    check(r.rc == 0 and r.bodies[0]["via"] == "origin", "layered socket", r)
    no_markers(ev, r)


def t_relay_thread_is_daemon_and_quiet(env):
    # A dressed connection started the relay: the JVM still exits by itself, prints nothing.
    r = env.client("httpclient", "https://localhost:%d/proxy/exit" % env.port, "--http1")
    env.server.take()
    check(r.rc == 0 and r.err == b"" and r.elapsed < 30, "exit", r)


TESTS = [t_java_version_unchanged, t_provider_list, t_no_tls_loads_nothing, t_inert_when_pid_or_args_wrong,
         t_httpclient_get_via_proxy, t_httpclient_post_and_download_2mib, t_httpclient_keepalive,
         t_urlconnection_via_proxy, t_socket_via_proxy, t_failsafe_reaches_origin_over_real_tls,
         t_failsafe_post_body_intact, t_untrusted_origin_is_the_programs_error, t_wrong_name_is_the_programs_error,
         t_urlconnection_own_hostname_verifier, t_relay_refuses_bad_greetings, t_app_context_dressed, t_not_dressed,
         t_tunnels_and_own_sockets_not_dressed, t_relay_thread_is_daemon_and_quiet]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", help="run only tests whose name contains this")
    ap.add_argument("-v", action="store_true", help="print each test's time")
    a = ap.parse_args()
    for tool in ("java", "javac", "jar", "keytool", "openssl"):
        if not shutil.which(tool):
            print("missing: " + tool)
            return 2
    tmp = tempfile.mkdtemp(prefix="lunar-hook-test-")
    failed = 0
    try:
        env = Env(tmp)
        env.setup()
        print("java: %s (JDK %d)" % (env.java_home, env.feature))
        for t in TESTS:
            if a.k and a.k not in t.__name__:
                continue
            env.server.take()
            t0 = time.time()
            try:
                t(env)
                print("ok    %s%s" % (t.__name__, " (%.1f s)" % (time.time() - t0) if a.v else ""))
            except Failure as e:
                failed += 1
                print("FAIL  %s\n%s\n" % (t.__name__, e))
            errors = kinds(env.server.take(), "server-error")
            if errors:
                failed += 1
                print("FAIL  %s: the test server failed: %s" % (t.__name__, errors))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s" % ("all passed" if not failed else "%d failed" % failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
