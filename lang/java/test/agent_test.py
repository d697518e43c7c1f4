#!/usr/bin/env python3
"""The Java agent without the preload: python3 lang/java/test/agent_test.py [-v] [-k WORD]

This script plays the preload's part (lang/PROTOCOL.md sections 4-6) and Lunar Proxy's:
java runs with `-javaagent:<jar>=v1 <pid> <token> <ports>` (pid = the JVM's own, through
`sh -c 'exec java ...'` and `$$`), and every listed-port connection lands on one local
server here, which looks at the first bytes:

- a TLS ClientHello (0x16): the connection was NOT dressed (or is the relay's own real
  TLS): the server is the TLS origin (a self-signed certificate made with openssl at start,
  trusted by the program through -Djavax.net.ssl.trustStore) and answers an HTTP echo;
- the marker line `LUNAR-HOOK/1 <token> <relay-port> <conn-id>\r\n`: the connection was
  dressed; the server checks the marker and, by the request's path, either answers as the
  proxy would (plain HTTP, `"via": "proxy"`), or plays the failsafe: connects to the agent's
  relay, sends the greeting and the request bytes it holds, and pipes both ways (the relay
  then makes real TLS back to this server, which answers as the origin, `"via": "origin"`).

Needs java, javac, jar, keytool and openssl. Exit status 0 when every check passed.
"""
import argparse
import hashlib
import json
import os
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

class Env:
    def __init__(self, tmp):
        self.tmp = tmp
        self.jar_dir = os.path.join(tmp, "agent")
        self.classes = os.path.join(tmp, "classes")

    def setup(self):
        r = subprocess.run([os.path.join(JAVA_DIR, "build.sh"), self.jar_dir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode != 0 or r.stdout:
            raise SystemExit("build.sh failed or printed something:\n" + r.stdout.decode())
        self.jar = os.path.join(self.jar_dir, "lunar-java-agent.jar")
        os.makedirs(self.classes)
        subprocess.run(["javac", "-d", self.classes, os.path.join(HERE, "AgentClient.java")], check=True)
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

    def java(self, argv, agent=True, trust=True, pid="$$", agent_args=None, timeout=60):
        opts = list(JAVA_OPTS)
        if trust:
            opts += ["-Djavax.net.ssl.trustStore=" + self.trust, "-Djavax.net.ssl.trustStoreType=PKCS12",
                     "-Djavax.net.ssl.trustStorePassword=" + PASSWORD]
        words = ["exec", "java"]
        if agent:
            args = agent_args if agent_args is not None else "v1 %s %s %s" % ("@PID@", TOKEN, self.ports)
            word = shlex.quote("-javaagent:%s=%s" % (self.jar, args))
            words.append(word.replace("@PID@", "'\"%s\"'" % pid) if "@PID@" in word else word)
        words += [shlex.quote(a) for a in opts + argv]
        script = " ".join(words)
        t0 = time.time()
        p = subprocess.run(["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        return Run(p.returncode, p.stdout, p.stderr, script, time.time() - t0)

    def client(self, mode, url, *more, **kw):
        return self.java(["-cp", self.classes, "AgentClient", mode, url] + list(more), **kw)


class Run:
    def __init__(self, rc, out, err, script, elapsed):
        self.rc, self.out, self.err, self.script, self.elapsed = rc, out, err, script, elapsed

    @property
    def bodies(self):
        return [json.loads(ln) for ln in self.out.decode("latin-1").splitlines()
                if ln.startswith("{")]

    @property
    def info(self):
        for ln in self.out.decode("latin-1").splitlines():
            if ln.startswith("INFO "):
                return json.loads(ln[5:])
        return None

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


def no_markers(ev, run):
    check(not kinds(ev, "marker"), "a connection was dressed: %s" % kinds(ev, "marker"), run)


def t_java_version_unchanged(env):
    base = env.java(["-version"], agent=False, trust=False)
    withagent = env.java(["-version"], trust=False)
    check(base.rc == 0 and withagent.rc == 0, "java -version failed", withagent)
    check(withagent.err == base.err and withagent.out == base.out == b"",
          "java -version output differs with the agent:\n%r\n%r" % (base.err, withagent.err))


def t_inert_when_pid_or_args_wrong(env):
    url = "https://localhost:%d/proxy" % env.port
    for kw in ({"pid": "1"}, {"agent_args": "v2 1 %s %s" % (TOKEN, env.ports)},
               {"agent_args": "v1 $$ short %s" % env.ports}, {"agent_args": ""}):
        env.server.take()
        r = env.client("httpclient", url, **kw)
        ev = env.server.take()
        check(r.rc == 0 and r.err == b"", "program failed or printed with an inert agent (%s)" % kw, r)
        no_markers(ev, r)
        check(r.bodies[0]["via"] == "origin", "not straight to the origin over TLS", r)


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
    host; at the relay the check runs again on the real certificate."""
    for verifier in ("accept", "reject"):
        r = env.client("urlconn", "https://127.0.0.2:%d/proxy/hv" % env.port, "--verifier", verifier)
        env.server.take()
        check(r.rc == 0 and r.bodies[0]["via"] == "proxy", "proxied with a %s verifier" % verifier, r)
    # The origin's certificate lacks 127.0.0.2: the verifier decides, as without the agent.
    r = env.client("urlconn", "https://127.0.0.2:%d/failsafe/hv" % env.port, "--verifier", "accept")
    env.server.take()
    check(r.rc == 0 and r.bodies[0]["via"] == "origin", "relay with an accepting verifier", r)
    # Without the agent the program says (at the handshake) what it must say through the relay.
    base = env.client("urlconn", "https://127.0.0.2:%d/direct/hv" % env.unlisted, "--verifier", "reject")
    check(base.rc == 3 and b"should be <127.0.0.2>" in base.err, "baseline", base)
    r = env.client("urlconn", "https://127.0.0.2:%d/failsafe/hv" % env.port, "--verifier", "reject")
    ev = env.server.take()
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
                  "-Djavax.net.ssl.keyStorePassword=" + PASSWORD, "-cp", env.classes, "AgentClient",
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


TESTS = [t_java_version_unchanged, t_inert_when_pid_or_args_wrong, t_httpclient_get_via_proxy,
         t_httpclient_post_and_download_2mib, t_httpclient_keepalive, t_urlconnection_via_proxy,
         t_socket_via_proxy, t_failsafe_reaches_origin_over_real_tls, t_failsafe_post_body_intact,
         t_untrusted_origin_is_the_programs_error, t_wrong_name_is_the_programs_error,
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
    tmp = tempfile.mkdtemp(prefix="lunar-agent-test-")
    failed = 0
    try:
        env = Env(tmp)
        env.setup()
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
