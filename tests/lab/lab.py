#!/usr/bin/env python3
"""The liblunar_intercept test lab: a network namespace with origins and proxies.

Python 3 stdlib only. Usable as a module (``from lab import Lab``) and as a CLI:

    python3 tests/lab/lab.py up   --name NAME [--managed]
    python3 tests/lab/lab.py down --name NAME
    python3 tests/lab/lab.py env  --name NAME        # shell exports
    python3 tests/lab/lab.py status --name NAME
    python3 tests/lab/lab.py run  --name NAME [--no-preload] [--debug] -- CMD...
    python3 tests/lab/lab.py mode --name NAME MODE   # test proxy mode
    python3 tests/lab/lab.py gc                       # remove labs whose owner died
    python3 tests/lab/lab.py listener --kind reset|silent --bind IP:PORT  # (internal)

Nothing leaves the namespace: every server binds an address on the namespace's
loopback (203.0.113.0/24 TEST-NET-3 and 127/8), names live in
/etc/netns/NAME/hosts, and the namespace has no other interface or route.
See tests/lab/README.md for the layout.
"""
import argparse
import atexit
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
DEFAULT_LIB = os.path.join(REPO, "target", "release", "liblunar_intercept.so")

# --- addresses -----------------------------------------------------------------
API_IP = "203.0.113.10"        # api.example.test: HTTP origin on :80 and :8080
OTHER_IP = "203.0.113.11"      # other.example.test: HTTP origin on :80
ECHO_IP = "203.0.113.12"       # echo.example.test: client-speaks-first echo on :80
BANNER_IP = "203.0.113.13"     # banner.example.test: server-speaks-first on :80
DOWN_IP = "203.0.113.14"       # down.example.test: address up, nothing listening
SPARE_IP = "203.0.113.15"      # spare.example.test: nothing listening, free for tests
UNTRUSTED_IP = "203.0.113.16"  # untrusted.example.test: https origin on :443 whose
                               # certificate comes from a CA no client trusts
INTERNAL_IP = "127.0.0.2"      # internal.test: HTTP origin on :80
API6_IP = "2001:db8::10"       # api6.example.test: HTTP origin on [2001:db8::10]:80
INTERNAL6_IP = "::1"           # HTTP origin on [::1]:80
NS_ADDRS = [API_IP, OTHER_IP, ECHO_IP, BANNER_IP, DOWN_IP, SPARE_IP, UNTRUSTED_IP]
NS_ADDRS6 = [API6_IP]

HOSTS_FILE = """127.0.0.1 localhost proxy.lunar.test
::1 localhost ip6-localhost ip6-loopback
127.0.0.2 internal.test
203.0.113.10 api.example.test
203.0.113.11 other.example.test
203.0.113.12 echo.example.test
203.0.113.13 banner.example.test
203.0.113.14 down.example.test
203.0.113.15 spare.example.test
203.0.113.16 untrusted.example.test
203.0.113.10 wrongname.example.test
2001:db8::10 api6.example.test
"""
# Nothing listens on 127.0.0.1:53 in the namespace: lookups of other names fail
# at once (port unreachable) instead of reaching any outside resolver.
RESOLV_FILE = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"

# Proxy ports (all on 127.0.0.1 in the namespace)
HAPROXY_TRAFFIC = 8000
HAPROXY_HANDSHAKE = 8081           # {"managed": <lab's managed flag>}
HAPROXY_HANDSHAKE_MANAGED = 8082   # always {"managed": true}
HAPROXY_HANDSHAKE_UNMANAGED = 8083  # always {"managed": false}
HAPROXY_HEALTH = 8040
# TLS between the library and the proxy (LUNAR_PROXY_SUPPORT_TLS=1): HAProxy speaks TLS
# (ALPN http/1.1) with a certificate for proxy.lunar.test (make_tls, proxy*.pem):
HAPROXY_TLS_TRAFFIC = 8400                # lunar_traffic over TLS, good certificate
HAPROXY_TLS_HANDSHAKE = 8443              # {"managed": false}, good certificate
HAPROXY_TLS_HANDSHAKE_WRONG_NAME = 8444   # certificate for wrong.lunar.test only
HAPROXY_TLS_HANDSHAKE_EXPIRED = 8445      # expired certificate (2020-01-01..2021-01-01)
HAPROXY_TLS_HANDSHAKE_UNKNOWN_CA = 8446   # certificate from the untrusted CA
HAPROXY_TLS_HANDSHAKE_PORTS = (HAPROXY_TLS_HANDSHAKE, HAPROXY_TLS_HANDSHAKE_WRONG_NAME,
                               HAPROXY_TLS_HANDSHAKE_EXPIRED, HAPROXY_TLS_HANDSHAKE_UNKNOWN_CA)
# TLS traffic binds with a bad certificate (the same certificates as 8444-8446), each its
# own frontend with lunar_traffic's rules (a client that skips verification is routed
# like on 8000/8400), every connection logged (a failed TLS handshake too): a traffic
# port that fails the library's verification while the handshake port (8443) is good.
HAPROXY_TLS_TRAFFIC_WRONG_NAME = 8401     # frontend lunar_traffic_tls_wrong_name
HAPROXY_TLS_TRAFFIC_EXPIRED = 8402        # frontend lunar_traffic_tls_expired
HAPROXY_TLS_TRAFFIC_UNKNOWN_CA = 8403     # frontend lunar_traffic_tls_unknown_ca
HAPROXY_TLS_TRAFFIC_BAD = {HAPROXY_TLS_TRAFFIC_WRONG_NAME: "lunar_traffic_tls_wrong_name",
                           HAPROXY_TLS_TRAFFIC_EXPIRED: "lunar_traffic_tls_expired",
                           HAPROXY_TLS_TRAFFIC_UNKNOWN_CA: "lunar_traffic_tls_unknown_ca"}
# Misbehaving "proxies" a test starts on demand (lab.start_listener(kind)), not by up():
TLS_RESET_PROXY = 8447   # "reset": reads the first bytes (the ClientHello), then RST
SILENT_PROXY = 8448      # "silent": accepts, reads, never answers (a handshake timeout)
LISTENERS = {"reset": TLS_RESET_PROXY, "silent": SILENT_PROXY}
TESTPROXY_TRAFFIC = 9000
TESTPROXY_CONTROL = 9001
TESTPROXY_HANDSHAKE = 9081
# The test proxy over TLS (the failsafe and retry protocol on a TLS link): HAProxy
# frontends in mode tcp with the good proxy certificate (proxy-bundle.pem, ALPN
# http/1.1) that end TLS and pass the plaintext byte stream, both ways, to the test
# proxy's clear-text ports, one backend connection per client connection, so every
# mode of the test proxy (errors, closes, resets, partial heads, retry-after, its
# handshake answers) applies as it is to a TLS client. Every connection is logged
# (option tcplog: the frontend name ends with "~", e.g. "lunar_testproxy_tls~").
HAPROXY_TESTPROXY_TLS_TRAFFIC = 8410     # -> 127.0.0.1:9000, frontend lunar_testproxy_tls
HAPROXY_TESTPROXY_TLS_HANDSHAKE = 8411   # -> 127.0.0.1:9081, lunar_testproxy_handshake_tls
HAPROXY_TESTPROXY_TLS_PORTS = (HAPROXY_TESTPROXY_TLS_TRAFFIC, HAPROXY_TESTPROXY_TLS_HANDSHAKE)
HAPROXY_TLS_PORTS = ((HAPROXY_TLS_TRAFFIC,) + tuple(sorted(HAPROXY_TLS_TRAFFIC_BAD))
                     + HAPROXY_TLS_HANDSHAKE_PORTS + HAPROXY_TESTPROXY_TLS_PORTS)
PROXY_HOST = "127.0.0.1:%d" % HAPROXY_TRAFFIC
TESTPROXY_TLS_FRONTEND = "lunar_testproxy_tls"                      # 8410
TESTPROXY_TLS_HANDSHAKE_FRONTEND = "lunar_testproxy_handshake_tls"  # 8411

# x-lunar-host value -> origin ip:port, for HAProxy and the test proxy.
# (":80" forms are accepted too, so that a wrong x-lunar-host still reaches the
# origin and the test can report the exact value the proxy saw.)
ROUTES = {}
for _name, _ip, _ports in [
    ("api.example.test", API_IP, (80, 8080)),
    ("other.example.test", OTHER_IP, (80,)),
    ("internal.test", INTERNAL_IP, (80,)),
    ("down.example.test", DOWN_IP, (80,)),
    ("echo.example.test", ECHO_IP, (80,)),
    ("banner.example.test", BANNER_IP, (80,)),
    ("api6.example.test", API6_IP, (80,)),
    (None, INTERNAL6_IP, (80,)),
]:
    _lit = "[%s]" % _ip if ":" in _ip else _ip
    for _host in ([_name] if _name else []) + [_lit]:
        for _p in _ports:
            if _p == 80:
                ROUTES[_host] = "%s:80" % _lit
                ROUTES["%s:80" % _host] = "%s:80" % _lit
            else:
                ROUTES["%s:%d" % (_host, _p)] = "%s:%d" % (_lit, _p)

# The same for https (x-lunar-scheme: https): x-lunar-host -> TLS origin ip:port.
# The bare name means port 443; ":443" forms are accepted too.
TLS_ROUTES = {}
for _name, _ip, _ports in [
    ("api.example.test", API_IP, (443, 8443)),
    ("other.example.test", OTHER_IP, (443,)),
    ("untrusted.example.test", UNTRUSTED_IP, (443,)),
    ("wrongname.example.test", API_IP, (443,)),  # a name api's certificate lacks
]:
    for _host in (_name, _ip):
        for _p in _ports:
            if _p == 443:
                TLS_ROUTES[_host] = "%s:443" % _ip
            TLS_ROUTES["%s:%d" % (_host, _p)] = "%s:%d" % (_ip, _p)

# origin services: name -> (kind, bind). "https": the HTTP echo origin behind TLS
# with the lab's certificate (api + other, signed by the lab CA); "https-untrusted":
# the same with a certificate from the untrusted CA.
ORIGINS = {
    "origin-api": ("http", "%s:80" % API_IP),
    "origin-api-8080": ("http", "%s:8080" % API_IP),
    "origin-other": ("http", "%s:80" % OTHER_IP),
    "origin-internal": ("http", "%s:80" % INTERNAL_IP),
    "origin-api6": ("http", "[%s]:80" % API6_IP),
    "origin-internal6": ("http", "[%s]:80" % INTERNAL6_IP),
    "line-echo": ("echo", "%s:80" % ECHO_IP),
    "line-banner": ("banner", "%s:80" % BANNER_IP),
    "origin-api-tls": ("https", "%s:443" % API_IP),
    "origin-api-tls-8443": ("https", "%s:8443" % API_IP),
    "origin-other-tls": ("https", "%s:443" % OTHER_IP),
    "origin-untrusted-tls": ("https-untrusted", "%s:443" % UNTRUSTED_IP),
    # the echo and banner line protocols inside TLS (certificate lines.pem, lab CA)
    "line-echo-tls": ("echo-tls", "%s:443" % ECHO_IP),
    "line-banner-tls": ("banner-tls", "%s:443" % BANNER_IP),
}

# Names in the lab's TLS certificates (also as IP SANs).
TLS_NAMES = [("api.example.test", API_IP), ("other.example.test", OTHER_IP)]
UNTRUSTED_NAMES = [("untrusted.example.test", UNTRUSTED_IP)]
# Names in the certificate of the TLS line servers (echo/banner.example.test :443).
LINE_TLS_NAMES = [("echo.example.test", ECHO_IP), ("banner.example.test", BANNER_IP)]
# Names in the proxy's certificates (proxy.pem, proxy-expired.pem, proxy-unknown.pem);
# proxy-wrongname.pem has only PROXY_WRONG_NAME (no IP SAN).
PROXY_NAME = "proxy.lunar.test"
PROXY_TLS_NAMES = [(PROXY_NAME, "127.0.0.1")]
PROXY_WRONG_NAME = "wrong.lunar.test"
# The expired proxy certificate's validity, entirely in the past (openssl ca dates).
PROXY_EXPIRED_DATES = ("20200101000000Z", "20210101000000Z")
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
JAVA_TRUSTSTORE_PASSWORD = "changeit"

# openssl configuration for the lab's CAs and leaves (extensions only).
OPENSSL_CNF = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = ${ENV::LAB_SAN}
"""

# `openssl ca` configuration, only to sign a leaf with dates of our choosing
# (`openssl x509 -req` of OpenSSL 3.0 cannot take a start date in the past). The CA's
# certificate and key are given on the command line (-cert/-keyfile), the extensions
# come from OPENSSL_CNF's v3_leaf (-extfile/-extensions), the serial is random
# (-rand_serial; the serial file must exist all the same).
OPENSSL_CA_CNF = """[ca]
default_ca = lab_ca
[lab_ca]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[policy_any]
commonName = supplied
"""

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def pattern_bytes(n):
    """Content of the origins' GET /bytes/N (and /chunked/N)."""
    pat = bytes(range(251))
    return (pat * (n // 251 + 1))[:n]


def _sanitized_env():
    drop = {"LD_PRELOAD", "LD_LIBRARY_PATH", "http_proxy", "https_proxy", "no_proxy",
            "all_proxy", "ftp_proxy", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "NODE_OPTIONS",
            "PYTHONPATH", "PYTHONHOME", "PERL5LIB", "PERL5OPT", "CURL_HOME", "WGETRC"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LUNAR_") and k not in drop and k.lower() not in drop}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return env


class Result(tuple):
    """(rc, out, err) with out/err as bytes; .text_out / .text_err decoded."""

    def __new__(cls, rc, out, err, argv=None, elapsed=0.0):
        r = super().__new__(cls, (rc, out, err))
        r.argv = argv
        r.elapsed = elapsed
        return r

    rc = property(lambda s: s[0])
    out = property(lambda s: s[1])
    err = property(lambda s: s[2])
    text_out = property(lambda s: s[1].decode("utf-8", "replace"))
    text_err = property(lambda s: s[2].decode("utf-8", "replace"))

    def __repr__(self):
        return "Result(rc=%r, out=%r, err=%r)" % (self.rc, self.out[:2000], self.err[:4000])


class LabError(RuntimeError):
    pass


def _json_lines(path):
    """The JSON records of a log with one per line (lines that do not parse, e.g. one
    being written, skipped); [] when there is no log yet."""
    recs = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    recs.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return recs


class Lab:
    """One lab: network namespace NAME, state in /tmp/lunar-lab-NAME/."""

    def __init__(self, name, managed=False, lib=None):
        if not name or "/" in name or len(name) > 64:
            raise ValueError("bad lab name %r" % name)
        self.name = name
        self.managed = managed
        self.lib = lib or os.environ.get("LUNAR_LIB") or DEFAULT_LIB
        self.dir = "/tmp/lunar-lab-%s" % name
        self.etc = "/etc/netns/%s" % name
        self.state_file = os.path.join(self.dir, "state.json")
        self.origin_log_path = os.path.join(self.dir, "origin.log")
        self.haproxy_log_path = os.path.join(self.dir, "haproxy.log")
        self.haproxy_sock_path = os.path.join(self.dir, "haproxy.sock")  # stats socket
        self.listener_log_path = os.path.join(self.dir, "listener.log")
        # TLS material, made by up() with the openssl CLI (see make_tls)
        self.tls_dir = os.path.join(self.dir, "tls")
        self.ca_file = os.path.join(self.tls_dir, "ca.pem")                    # lab CA
        self.untrusted_ca_file = os.path.join(self.tls_dir, "untrusted-ca.pem")
        self.tls_cert = os.path.join(self.tls_dir, "lab.pem")        # api + other
        self.tls_key = os.path.join(self.tls_dir, "lab.key")
        self.untrusted_cert = os.path.join(self.tls_dir, "untrusted.pem")
        self.untrusted_key = os.path.join(self.tls_dir, "untrusted.key")
        self.lines_cert = os.path.join(self.tls_dir, "lines.pem")   # echo + banner :443
        self.lines_key = os.path.join(self.tls_dir, "lines.key")
        # the proxy's certificates (TLS between the library and HAProxy; see make_tls):
        # *_cert/*_key the leaf and its key, *_bundle both in one PEM (HAProxy's `crt`)
        tls = self.tls_dir
        self.proxy_cert = os.path.join(tls, "proxy.pem")                # lab CA, good
        self.proxy_key = os.path.join(tls, "proxy.key")
        self.proxy_bundle = os.path.join(tls, "proxy-bundle.pem")
        self.proxy_wrongname_cert = os.path.join(tls, "proxy-wrongname.pem")  # wrong.lunar.test
        self.proxy_wrongname_key = os.path.join(tls, "proxy-wrongname.key")
        self.proxy_wrongname_bundle = os.path.join(tls, "proxy-wrongname-bundle.pem")
        self.proxy_expired_cert = os.path.join(tls, "proxy-expired.pem")  # 2020..2021
        self.proxy_expired_key = os.path.join(tls, "proxy-expired.key")
        self.proxy_expired_bundle = os.path.join(tls, "proxy-expired-bundle.pem")
        self.proxy_unknown_cert = os.path.join(tls, "proxy-unknown.pem")  # untrusted CA
        self.proxy_unknown_key = os.path.join(tls, "proxy-unknown.key")
        self.proxy_unknown_bundle = os.path.join(tls, "proxy-unknown-bundle.pem")
        self.wgetrc = os.path.join(self.tls_dir, "wgetrc")
        self.procs = {}     # service -> Popen (services this object started)
        self.extra = []     # background processes started by spawn()
        self._down_done = False
        self._lock = threading.Lock()

    # ---- state -------------------------------------------------------------
    def _load_state(self):
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"pids": {}}

    def _save_state(self, st):
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=1)
        os.rename(tmp, self.state_file)

    def _set_pid(self, svc, pid):
        with self._lock:
            st = self._load_state()
            st.setdefault("pids", {})
            if pid is None:
                st["pids"].pop(svc, None)
            else:
                st["pids"][svc] = pid
            self._save_state(st)

    @property
    def netns_path(self):
        return "/run/netns/%s" % self.name

    def exists(self):
        return os.path.exists(self.netns_path)

    # ---- helpers -------------------------------------------------------------
    def _ip(self, *args, check=True):
        r = subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if check and r.returncode != 0:
            raise LabError("ip %s: %s" % (" ".join(args), r.stderr.decode().strip()))
        return r

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.name]

    def in_ns(self, fn, *args, **kw):
        """Run fn(*args, **kw) in a helper thread that has entered the namespace
        (setns on that thread only). Use IP addresses: /etc/hosts there is the host's."""
        box = {}

        def target():
            fd = os.open(self.netns_path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    box["e"] = OSError(e, "setns: " + os.strerror(e))
                    return
            finally:
                os.close(fd)
            try:
                box["v"] = fn(*args, **kw)
            except BaseException as e:  # noqa: B902 - re-raised in caller
                box["e"] = e

        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join()
        if "e" in box:
            raise box["e"]
        return box.get("v")

    def port_open(self, ip, port, timeout=0.3):
        def probe():
            try:
                with socket.create_connection((ip, port), timeout=timeout):
                    return True
            except OSError:
                return False
        return self.in_ns(probe)

    def wait_port(self, ip, port, up=True, timeout=10.0, proc=None):
        self._wait_until(self.port_open, ip, port, up, timeout, proc)

    def _wait_until(self, is_up, ip, port, up, timeout, proc):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if is_up(ip, port) == up:
                return
            if proc is not None and up and proc.poll() is not None:
                raise LabError("process for %s:%d exited with %s" % (ip, port, proc.returncode))
            time.sleep(0.05)
        raise LabError("%s:%d did not become %s" % (ip, port, "ready" if up else "closed"))

    def listening(self, ip, port):
        """True if a TCP socket listens on ip:port (IPv4) in the namespace, read from
        /proc/thread-self/net/tcp: no connection is made (nothing for a server to log)."""
        want = "%s:%04X" % ("".join("%02X" % int(b) for b in reversed(ip.split("."))), port)

        def probe():
            with open("/proc/thread-self/net/tcp") as f:
                next(f)
                return any(fields[1] == want and fields[3] == "0A"  # TCP_LISTEN
                           for fields in (line.split() for line in f))
        return self.in_ns(probe)

    def wait_listen(self, ip, port, up=True, timeout=10.0, proc=None):
        """wait_port() without connecting (see listening())."""
        self._wait_until(self.listening, ip, port, up, timeout, proc)

    def http(self, method, ip, port, path, body=None, headers=None, timeout=10):
        """Plain HTTP request from inside the namespace, without the library.
        Returns (status, [[k, v]...], body bytes)."""
        def do():
            c = http.client.HTTPConnection(ip, port, timeout=timeout)
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                return r.status, [list(h) for h in r.getheaders()], r.read()
            finally:
                c.close()
        return self.in_ns(do)

    # ---- lifecycle -----------------------------------------------------------
    def up(self):
        if self.exists():
            raise LabError("namespace %s already exists (lab.py down --name %s)" % (self.name, self.name))
        os.makedirs(self.dir, exist_ok=True)
        self._save_state({"name": self.name, "owner_pid": os.getpid(), "managed": self.managed,
                          "lib": self.lib, "pids": {}, "created": time.time()})
        try:
            self._ip("netns", "add", self.name)
            os.makedirs(self.etc, exist_ok=True)
            with open(os.path.join(self.etc, "hosts"), "w") as f:
                f.write(HOSTS_FILE)
            with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
                f.write(RESOLV_FILE)
            self._ip("-n", self.name, "link", "set", "lo", "up")
            for a in NS_ADDRS:
                self._ip("-n", self.name, "addr", "add", a + "/32", "dev", "lo")
            for a in NS_ADDRS6:
                self._ip("-n", self.name, "addr", "add", a + "/128", "dev", "lo", "nodad")
            with open(os.path.join(self.dir, "routes.json"), "w") as f:
                json.dump(ROUTES, f, indent=1)
            with open(os.path.join(self.dir, "tls_routes.json"), "w") as f:
                json.dump(TLS_ROUTES, f, indent=1)
            self.make_tls()
            self._write_haproxy_files()
            self.start_origins()
            self.start_haproxy()
            self.start_testproxy()
        except BaseException:
            self.down()
            raise
        return self

    def _popen_service(self, svc, argv, logname=None):
        log = open(os.path.join(self.dir, logname or (svc + ".out")), "ab")
        try:
            p = subprocess.Popen(self.exec_prefix() + argv, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, env=_sanitized_env(),
                                 start_new_session=True, cwd=self.dir)
        finally:
            log.close()
        self.procs[svc] = p
        self._set_pid(svc, p.pid)
        return p

    def _wait_ready_file(self, svc, path, proc, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(path):
                return
            if proc.poll() is not None:
                out = self._tail(svc + ".out")
                raise LabError("%s exited (%s): %s" % (svc, proc.returncode, out))
            time.sleep(0.02)
        raise LabError("%s not ready after %.0fs" % (svc, timeout))

    def _tail(self, fname, n=3000):
        try:
            with open(os.path.join(self.dir, fname), "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    # ---- TLS ---------------------------------------------------------------------
    def _openssl(self, *args, san=None):
        env = dict(_sanitized_env(), LAB_SAN=san or "DNS:unused.invalid")
        r = subprocess.run([OPENSSL] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env, cwd=self.tls_dir)
        if r.returncode != 0:
            raise LabError("openssl %s: %s" % (" ".join(args), r.stdout.decode()))

    def _make_ca(self, name, cn):
        self._openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-keyout", name + ".key",
                      "-out", name + ".pem", "-days", "3650", "-subj", "/CN=" + cn,
                      "-config", "openssl.cnf", "-extensions", "v3_ca")

    def _make_leaf(self, name, ca, names, dates=None):
        """name.pem/name.key signed by ca.pem/ca.key: SANs DNS and IP of `names`
        ([(dns, ip)]; ip None: no IP SAN), CN the first name; valid for 825 days from
        now, or `dates` = (start, end) in openssl ca's YYYYMMDDHHMMSSZ."""
        san = ",".join(["DNS:%s" % n for n, _ in names] + ["IP:%s" % ip for _, ip in names if ip])
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                      "-subj", "/CN=" + names[0][0], "-config", "openssl.cnf")
        if dates is None:
            self._openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
                          "-CAkey", ca + ".key", "-set_serial", "0x" + os.urandom(8).hex(),
                          "-days", "825", "-out", name + ".pem", "-extfile", "openssl.cnf",
                          "-extensions", "v3_leaf", san=san)
            return
        # openssl ca takes -startdate/-enddate (in the past too); it keeps a database
        # (index.txt) and a copy of each certificate in ca-db/
        db = os.path.join(self.tls_dir, "ca-db")
        os.makedirs(db, exist_ok=True)
        open(os.path.join(db, "index.txt"), "a").close()
        with open(os.path.join(db, "serial"), "w") as f:  # required; -rand_serial used
            f.write("01\n")
        with open(os.path.join(self.tls_dir, "openssl-ca.cnf"), "w") as f:
            f.write(OPENSSL_CA_CNF)
        self._openssl("ca", "-batch", "-config", "openssl-ca.cnf", "-cert", ca + ".pem",
                      "-keyfile", ca + ".key", "-rand_serial", "-in", name + ".csr",
                      "-out", name + ".pem", "-notext", "-startdate", dates[0],
                      "-enddate", dates[1], "-extfile", "openssl.cnf",
                      "-extensions", "v3_leaf", san=san)

    def _make_bundle(self, name):
        """name-bundle.pem: name.pem then name.key, one file for HAProxy's `crt`."""
        with open(os.path.join(self.tls_dir, name + "-bundle.pem"), "w") as out:
            for ext in (".pem", ".key"):
                with open(os.path.join(self.tls_dir, name + ext)) as f:
                    out.write(f.read())

    def make_tls(self):
        """The lab's TLS material, in tls_dir: a test CA (ca.pem) and the leaf the
        https origins of api/other.example.test serve (lab.pem: DNS and IP SANs of
        both), an untrusted CA and the leaf of untrusted.example.test, and a wgetrc
        that trusts the test CA (wget reads no CA variable).

        And the certificates HAProxy serves on its TLS ports (the library's TLS to the
        proxy), each with a -bundle.pem (certificate + key) for `crt`:
        proxy.pem (lab CA; DNS:proxy.lunar.test, IP:127.0.0.1), proxy-wrongname.pem
        (lab CA; DNS:wrong.lunar.test only, no IP SAN), proxy-expired.pem (lab CA,
        proxy.pem's SANs, valid 2020-01-01 to 2021-01-01 only), proxy-unknown.pem (the
        untrusted CA, proxy.pem's SANs)."""
        os.makedirs(self.tls_dir, exist_ok=True)
        with open(os.path.join(self.tls_dir, "openssl.cnf"), "w") as f:
            f.write(OPENSSL_CNF)
        self._make_ca("ca", "Lunar Lab Test CA")
        self._make_leaf("lab", "ca", TLS_NAMES)
        self._make_ca("untrusted-ca", "Lunar Lab Untrusted CA")
        self._make_leaf("untrusted", "untrusted-ca", UNTRUSTED_NAMES)
        self._make_leaf("lines", "ca", LINE_TLS_NAMES)
        self._make_leaf("proxy", "ca", PROXY_TLS_NAMES)
        self._make_leaf("proxy-wrongname", "ca", [(PROXY_WRONG_NAME, None)])
        self._make_leaf("proxy-expired", "ca", PROXY_TLS_NAMES, dates=PROXY_EXPIRED_DATES)
        self._make_leaf("proxy-unknown", "untrusted-ca", PROXY_TLS_NAMES)
        for name in ("proxy", "proxy-wrongname", "proxy-expired", "proxy-unknown"):
            self._make_bundle(name)
        with open(self.wgetrc, "w") as f:
            f.write("ca_certificate = %s\n" % self.ca_file)

    def tls_env(self, ca=None):
        """Variables that make the clients trust `ca` (default: the lab CA) instead of
        the system's store: OpenSSL programs (Python ssl, Ruby, Perl IO::Socket::SSL,
        PHP through our client script), curl, requests, Node (added to its own store),
        wget (a wgetrc). Java needs java_opts()."""
        ca = ca or self.ca_file
        env = {"SSL_CERT_FILE": ca, "SSL_CERT_DIR": os.path.join(self.tls_dir, "no-such-dir"),
               "CURL_CA_BUNDLE": ca, "REQUESTS_CA_BUNDLE": ca, "NODE_EXTRA_CA_CERTS": ca,
               "PERL_LWP_SSL_CA_FILE": ca}
        if ca == self.ca_file:
            env["WGETRC"] = self.wgetrc
        else:
            rc = os.path.join(self.tls_dir, "wgetrc-" + os.path.basename(ca))
            with open(rc, "w") as f:
                f.write("ca_certificate = %s\n" % ca)
            env["WGETRC"] = rc
        return env

    def java_truststore(self, ca=None):
        """A PKCS12 trust store holding `ca` (default: the lab CA), made once with
        keytool. Returns its path."""
        ca = ca or self.ca_file
        path = os.path.join(self.tls_dir, os.path.basename(ca)[:-4] + ".p12")
        if not os.path.exists(path):
            keytool = shutil.which("keytool") or "keytool"
            r = subprocess.run([keytool, "-importcert", "-noprompt", "-alias", "lunar-lab-ca",
                                "-file", ca, "-keystore", path + ".tmp", "-storetype", "PKCS12",
                                "-storepass", JAVA_TRUSTSTORE_PASSWORD],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=_sanitized_env())
            if r.returncode != 0:
                raise LabError("keytool: " + r.stdout.decode())
            os.rename(path + ".tmp", path)
        return path

    def java_opts(self, ca=None):
        """java command-line options that trust `ca` (default: the lab CA)."""
        return ["-Djavax.net.ssl.trustStore=" + self.java_truststore(ca),
                "-Djavax.net.ssl.trustStoreType=PKCS12",
                "-Djavax.net.ssl.trustStorePassword=" + JAVA_TRUSTSTORE_PASSWORD]

    def https(self, method, ip, port, path, body=None, headers=None, server_hostname=None,
              ca=None, timeout=10):
        """An https request from inside the namespace, without the library, verifying
        the origin against `ca` (default: the lab CA) and server_hostname (default:
        Host header, else ip). Returns (status, [[k, v]...], body bytes)."""
        import ssl
        ctx = ssl.create_default_context(cafile=ca or self.ca_file)
        name = server_hostname or (headers or {}).get("Host", ip).split(":")[0]

        def do():
            # connect to ip, verify the certificate for `name` (the thread's /etc/hosts
            # is the host's: names are not resolved here)
            c = http.client.HTTPConnection(ip, port, timeout=timeout)
            sock = socket.create_connection((ip, port), timeout=timeout)
            c.sock = ctx.wrap_socket(sock, server_hostname=name)
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                return r.status, [list(h) for h in r.getheaders()], r.read()
            finally:
                c.close()
        return self.in_ns(do)

    def start_origins(self):
        procs = []
        for svc, (kind, bind) in ORIGINS.items():
            ready = os.path.join(self.dir, svc + ".ready")
            if os.path.exists(ready):
                os.unlink(ready)
            tls = []
            if kind == "https":
                kind, tls = "http", ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
            elif kind == "https-untrusted":
                kind, tls = "http", ["--tls-cert", self.untrusted_cert, "--tls-key", self.untrusted_key]
            elif kind in ("echo-tls", "banner-tls"):
                kind, tls = kind[:-4], ["--tls-cert", self.lines_cert, "--tls-key", self.lines_key]
            p = self._popen_service(svc, [PY, os.path.join(HERE, "origin.py"), "--kind", kind,
                                          "--bind", bind, "--log", self.origin_log_path,
                                          "--ready", ready] + tls)
            procs.append((svc, ready, p))
        for svc, ready, p in procs:
            self._wait_ready_file(svc, ready, p)

    def _write_haproxy_files(self):
        with open(os.path.join(self.dir, "hosts_ip.map"), "w") as f:
            for k, v in sorted(ROUTES.items()):
                f.write("%s %s\n" % (k, v.rsplit(":", 1)[0].strip("[]")))
        with open(os.path.join(self.dir, "hosts_port.map"), "w") as f:
            for k, v in sorted(ROUTES.items()):
                f.write("%s %s\n" % (k, v.rsplit(":", 1)[1]))
        with open(os.path.join(self.dir, "tls_hosts_ip.map"), "w") as f:
            for k, v in sorted(TLS_ROUTES.items()):
                f.write("%s %s\n" % (k, v.rsplit(":", 1)[0]))
        with open(os.path.join(self.dir, "tls_hosts_port.map"), "w") as f:
            for k, v in sorted(TLS_ROUTES.items()):
                f.write("%s %s\n" % (k, v.rsplit(":", 1)[1]))
        for code, reason, lerr, text in [(503, "Service Unavailable", 2, "endpoint cannot be reached"),
                                         (502, "Bad Gateway", 2, "endpoint cannot be reached"),
                                         (504, "Gateway Timeout", 3, "gateway timeout")]:
            body = text + "\n"
            with open(os.path.join(self.dir, "err%d.http" % code), "w") as f:
                f.write("HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\nx-lunar-error: %d\r\n"
                        "cache-control: no-cache\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
                        % (code, reason, lerr, len(body), body))
        with open(os.path.join(self.dir, "haproxy.cfg"), "w") as f:
            f.write(self.haproxy_config())

    def haproxy_config(self):
        d = self.dir
        seen = "".join(
            "    http-request set-header x-seen-lunar-%s %%[req.fhdr(x-lunar-%s)] "
            "if { req.hdr(x-lunar-%s) -m found }\n" % (h, h, h)
            for h in ("host", "scheme", "interceptor", "req-id", "tenant-id", "sequence-id"))
        counts = ",".join("%s=%%[req.hdr_cnt(x-lunar-%s)]" % (h, h)
                          for h in ("host", "scheme", "interceptor", "req-id", "tenant-id",
                                    "allow", "sequence-id"))

        def hs(port, managed, name, crt=None):
            # crt: a TLS handshake port serving that certificate (+ key) bundle. Every
            # connection to it is logged (no dontlognull): a failed TLS handshake too,
            # as "<frontend>/<bind>: <reason>" (e.g. "SSL handshake failure")
            tls = "" if crt is None else (" ssl crt %s alpn http/1.1\n"
                                          "    no option dontlognull" % crt)
            return """
frontend {name}
    bind 127.0.0.1:{port}{tls}
    capture request header x-lunar-tenant-id len 64
    capture request header x-lunar-interceptor len 100
    http-request return status 200 content-type application/json string '{{"managed": {m}}}' if {{ path /handshake }}
    http-request return status 404 content-type text/plain string "not found"
""".format(name=name, port=port, tls=tls, m="true" if managed else "false")

        # lunar_traffic's rules (every traffic frontend's)
        traffic_rules = """    capture request header x-lunar-host len 100
    capture request header x-lunar-req-id len 64
    http-request return status 401 content-type text/plain hdr x-lunar-error 1 string "missing x-lunar-host" if !{{ req.hdr(x-lunar-host) -m found }}
    acl https req.hdr(x-lunar-scheme),lower -m str https
    http-request set-var(txn.dst_ip) req.hdr(x-lunar-host),lower,map_str({d}/hosts_ip.map) if !https
    http-request set-var(txn.dst_port) req.hdr(x-lunar-host),lower,map_str_int({d}/hosts_port.map) if !https
    http-request set-var(txn.dst_ip) req.hdr(x-lunar-host),lower,map_str({d}/tls_hosts_ip.map) if https
    http-request set-var(txn.dst_port) req.hdr(x-lunar-host),lower,map_str_int({d}/tls_hosts_port.map) if https
    http-request set-var(txn.sni) req.hdr(x-lunar-host),lower,field(1,:) if https
    http-request return status 503 content-type text/plain hdr x-lunar-error 5 string "could not resolve host" if !{{ var(txn.dst_ip) -m found }}
    http-request set-header x-seen-lunar-counts "{counts}"
{seen}    http-request set-header x-seen-host %[req.fhdr(host)]
    http-request set-header x-seen-src %[src]:%[src_port]
    http-request set-header x-seen-proxy-tls %[ssl_fc_protocol] if {{ ssl_fc }}
    http-request set-header Host %[req.hdr(x-lunar-host)]
    http-request del-header x-lunar- -m beg
    http-request add-header x-via-haproxy 1
    use_backend origins_tls if {{ var(txn.sni) -m found }}
    default_backend origins
""".format(d=d, counts=counts, seen=seen)

        def tcp_tls_front(name, port, backend, dst):
            return """frontend {name}
    mode tcp
    bind 127.0.0.1:{port} name tls ssl crt {crt} alpn http/1.1
    option socket-stats
    option tcplog
    no option dontlognull
    no option http-keep-alive
    default_backend {backend}

backend {backend}
    mode tcp
    no option http-keep-alive
    # never a second connect for one client connection: a reset at accept (`down`)
    # can look like a failed connect, which `retries 1` (defaults) would try again
    retries 0
    server tp {dst}
""".format(name=name, port=port, crt=self.proxy_bundle, backend=backend, dst=dst)

        def bad_traffic(port, name, crt):
            return """frontend {name}
    bind 127.0.0.1:{port} ssl crt {crt} alpn http/1.1
    no option dontlognull
""".format(name=name, port=port, crt=crt) + traffic_rules

        return """# generated by tests/lab/lab.py for lab {name}
global
    log stdout format raw local0 info
    maxconn 4000
    nbthread 2
    # show stat (haproxy_stat()): per-listener counters of lunar_traffic (socket-stats)
    stats socket {d}/haproxy.sock mode 600 level user

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option http-keep-alive
    timeout connect 2s
    timeout client 30s
    timeout server 15s
    timeout http-request 10s
    timeout http-keep-alive 30s
    retries 1
    errorfile 502 {d}/err502.http
    errorfile 503 {d}/err503.http
    errorfile 504 {d}/err504.http

# Traffic, plain on {traffic} and over TLS on {tls_traffic} (certificate proxy.pem): one
# frontend, the same answers. How a test tells a request came over TLS:
# - haproxy.log: the frontend field of the line (option httplog's %ft) is
#   "lunar_traffic~" over TLS and "lunar_traffic" in clear text (HAProxy's "~" suffix);
# - the origin's echo: the header x-seen-proxy-tls (the TLS version, e.g. TLSv1.3) is
#   added over TLS only;
# - how many connections each bind accepted: the listener rows "plain" and "tls" of
#   show stat on the stats socket (tls_traffic_connections()).
frontend lunar_traffic
    bind 127.0.0.1:{traffic} name plain
    bind 127.0.0.1:{tls_traffic} name tls ssl crt {proxy_bundle} alpn http/1.1
    option socket-stats
{traffic_rules}
# TLS traffic with a bad certificate (make_tls): lunar_traffic's rules, every
# connection logged (a failed TLS handshake as "<frontend>/<bind>: SSL handshake
# failure"), for a traffic port that fails verification while the handshake port is good.
{bad_traffic}
backend origins
    http-request set-dst var(txn.dst_ip)
    http-request set-dst-port var(txn.dst_port)
    server origin 0.0.0.0:0

# x-lunar-scheme: https: TLS to the origin, verified with the lab CA and the
# host name of x-lunar-host (sent as SNI; HAProxy checks the name against it).
# An IP literal is not sent as SNI and HAProxy cannot check IP SANs: chain only.
backend origins_tls
    http-request set-dst var(txn.dst_ip)
    http-request set-dst-port var(txn.dst_port)
    acl ip_literal var(txn.sni) -m reg ^[0-9.]+$
    use-server origin_tls_ip if ip_literal
    use-server origin_tls if !ip_literal
    server origin_tls 0.0.0.0:0 ssl verify required ca-file {ca} sni var(txn.sni) alpn http/1.1
    server origin_tls_ip 0.0.0.0:0 ssl verify required ca-file {ca} alpn http/1.1
{hs1}{hs2}{hs3}
# Handshake over TLS (the library's TLS to the proxy): {{"managed": false}} on each, a
# good certificate on {tls_hs}, a bad one on the others (see make_tls). A request over
# TLS is logged with the frontend name followed by "~" (e.g. "lunar_handshake_tls~").
{hs4}{hs5}{hs6}{hs7}
# The test proxy over TLS: TLS ended here, the plaintext passed as it is (mode tcp)
# to the test proxy's traffic port and handshake port, one backend connection per
# client connection (what the test proxy does to one, it does to the other). Every
# connection is logged (tcplog: "<client> [date] lunar_testproxy_tls~ testproxy_traffic/tp ...").
# show stat: listener "tls" of each frontend (haproxy_sessions(TESTPROXY_TLS_FRONTEND)).
{testproxy_tls}
frontend lunar_health
    bind 127.0.0.1:{health}
    http-request return status 200 content-type text/plain string "proxy is up" if {{ path /healthcheck }}
    http-request return status 404 content-type text/plain string "not found"
""".format(name=self.name, d=d, traffic=HAPROXY_TRAFFIC, counts=counts, seen=seen,
           ca=self.ca_file,
           health=HAPROXY_HEALTH,
           hs1=hs(HAPROXY_HANDSHAKE, self.managed, "lunar_handshake"),
           hs2=hs(HAPROXY_HANDSHAKE_MANAGED, True, "lunar_handshake_managed"),
           hs3=hs(HAPROXY_HANDSHAKE_UNMANAGED, False, "lunar_handshake_unmanaged"),
           tls_traffic=HAPROXY_TLS_TRAFFIC, proxy_bundle=self.proxy_bundle,
           traffic_rules=traffic_rules,
           bad_traffic="\n".join(
               bad_traffic(port, HAPROXY_TLS_TRAFFIC_BAD[port], crt) for port, crt in [
                   (HAPROXY_TLS_TRAFFIC_WRONG_NAME, self.proxy_wrongname_bundle),
                   (HAPROXY_TLS_TRAFFIC_EXPIRED, self.proxy_expired_bundle),
                   (HAPROXY_TLS_TRAFFIC_UNKNOWN_CA, self.proxy_unknown_bundle)]),
           testproxy_tls="\n".join([
               tcp_tls_front(TESTPROXY_TLS_FRONTEND, HAPROXY_TESTPROXY_TLS_TRAFFIC,
                             "testproxy_traffic", "127.0.0.1:%d" % TESTPROXY_TRAFFIC),
               tcp_tls_front(TESTPROXY_TLS_HANDSHAKE_FRONTEND, HAPROXY_TESTPROXY_TLS_HANDSHAKE,
                             "testproxy_handshake", "127.0.0.1:%d" % TESTPROXY_HANDSHAKE)]),
           tls_hs=HAPROXY_TLS_HANDSHAKE,
           hs4=hs(HAPROXY_TLS_HANDSHAKE, False, "lunar_handshake_tls", self.proxy_bundle),
           hs5=hs(HAPROXY_TLS_HANDSHAKE_WRONG_NAME, False, "lunar_handshake_tls_wrong_name",
                  self.proxy_wrongname_bundle),
           hs6=hs(HAPROXY_TLS_HANDSHAKE_EXPIRED, False, "lunar_handshake_tls_expired",
                  self.proxy_expired_bundle),
           hs7=hs(HAPROXY_TLS_HANDSHAKE_UNKNOWN_CA, False, "lunar_handshake_tls_unknown_ca",
                  self.proxy_unknown_bundle))

    def check_haproxy_config(self):
        r = subprocess.run([HAPROXY, "-c", "-f", os.path.join(self.dir, "haproxy.cfg")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise LabError("haproxy -c failed:\n" + r.stdout.decode())

    def start_haproxy(self):
        if self.haproxy_running():
            return
        self.check_haproxy_config()
        p = self._popen_service("haproxy", [HAPROXY, "-db", "-f", os.path.join(self.dir, "haproxy.cfg")],
                                logname="haproxy.log")
        for port in (HAPROXY_TRAFFIC, HAPROXY_HANDSHAKE, HAPROXY_HEALTH):
            self.wait_port("127.0.0.1", port, proc=p)
        # the TLS ports: listening, seen without a connection (which their logs would show)
        for port in HAPROXY_TLS_PORTS:
            self.wait_listen("127.0.0.1", port, proc=p)

    def stop_haproxy(self):
        self._stop_service("haproxy")
        for port in (HAPROXY_TRAFFIC, HAPROXY_HANDSHAKE):
            self.wait_port("127.0.0.1", port, up=False)
        for port in HAPROXY_TLS_PORTS:
            self.wait_listen("127.0.0.1", port, up=False)

    def haproxy_running(self):
        return self._svc_alive("haproxy")

    def start_testproxy(self, mode="pass"):
        if self._svc_alive("testproxy"):
            return
        ready = os.path.join(self.dir, "testproxy.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        p = self._popen_service("testproxy", [
            PY, os.path.join(HERE, "testproxy.py"),
            "--bind", "127.0.0.1:%d" % TESTPROXY_TRAFFIC,
            "--control", "127.0.0.1:%d" % TESTPROXY_CONTROL,
            "--handshake", "127.0.0.1:%d" % TESTPROXY_HANDSHAKE,
            "--hosts", os.path.join(self.dir, "routes.json"),
            "--tls-hosts", os.path.join(self.dir, "tls_routes.json"), "--cafile", self.ca_file,
            "--mode", mode,
            "--ready", ready])
        self._wait_ready_file("testproxy", ready, p)

    def stop_testproxy(self):
        self._stop_service("testproxy")

    # ---- misbehaving proxies, started on demand -------------------------------------
    def start_listener(self, kind):
        """Start one of the misbehaving "proxies" on 127.0.0.1 (a lab service, stopped by
        its PID by stop_listener(kind) or down()); returns its port:
          "reset"  (TLS_RESET_PROXY, 8447): accepts, reads the client's first bytes (a
                   ClientHello), then closes with SO_LINGER 0: an RST in the TLS handshake;
          "silent" (SILENT_PROXY, 8448): accepts, reads and discards, never answers: a
                   handshake that times out.
        Each connection is one JSON line in listener.log (listener_log())."""
        port = LISTENERS[kind]
        svc = "listener-" + kind
        if not self._svc_alive(svc):
            ready = os.path.join(self.dir, svc + ".ready")
            if os.path.exists(ready):
                os.unlink(ready)
            p = self._popen_service(svc, [PY, os.path.join(HERE, "lab.py"), "listener",
                                          "--kind", kind, "--bind", "127.0.0.1:%d" % port,
                                          "--log", self.listener_log_path, "--ready", ready])
            self._wait_ready_file(svc, ready, p)
        return port

    def stop_listener(self, kind):
        self._stop_service("listener-" + kind)
        self.wait_listen("127.0.0.1", LISTENERS[kind], up=False)

    def listener_log(self, kind=None):
        """The listeners' connections (list of dicts: "listener" (kind), "port", "peer",
        "first_bytes" (hex, up to 64), "client_hello" (bool: a TLS handshake record
        holding a ClientHello), "bytes" (silent: read until the peer closed), "t"),
        optionally of one kind. reset logs before its RST, silent when the peer closes."""
        recs = _json_lines(self.listener_log_path)
        return [r for r in recs if kind is None or r.get("listener") == kind]

    def _svc_alive(self, svc):
        p = self.procs.get(svc)
        if p is not None:
            return p.poll() is None
        pid = self._load_state().get("pids", {}).get(svc)
        return bool(pid) and self._pid_in_ns(pid)

    def _ns_inode(self):
        try:
            return os.stat(self.netns_path).st_ino
        except OSError:
            return None

    def _pid_in_ns(self, pid):
        """True if pid is alive and its network namespace is this lab's."""
        ino = self._ns_inode()
        try:
            return ino is not None and os.stat("/proc/%d/ns/net" % pid).st_ino == ino
        except OSError:
            return False

    def _kill_pid(self, pid, proc=None, grace=3.0):
        """Stop one process we started: SIGTERM, then SIGKILL. Only if it is in our netns
        (a recycled PID belonging to someone else is left alone)."""
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            return
        if not self._pid_in_ns(pid):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.time() + grace
        while time.time() < deadline:
            if not os.path.exists("/proc/%d" % pid) or self._is_zombie(pid):
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @staticmethod
    def _is_zombie(pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    def _stop_service(self, svc):
        p = self.procs.pop(svc, None)
        pid = self._load_state().get("pids", {}).get(svc)
        if p is not None:
            self._kill_pid(p.pid, p)
        elif pid:
            self._kill_pid(pid)
        self._set_pid(svc, None)

    def down(self):
        """Stop everything, delete the namespace, /etc/netns/NAME and the state dir.
        Safe to call more than once and from another process (CLI)."""
        if self._down_done:
            return
        self._down_done = True
        errors = []
        for p in list(self.extra):
            try:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            except (OSError, subprocess.TimeoutExpired) as e:
                errors.append(str(e))
        st = self._load_state()
        for svc in list(self.procs) + [s for s in st.get("pids", {}) if s not in self.procs]:
            try:
                self._stop_service(svc)
            except Exception as e:  # keep going: the namespace must go
                errors.append("%s: %s" % (svc, e))
        # safety net: anything still running inside our namespace (started by us or by
        # tests through run/spawn) is stopped by its PID.
        if self.exists():
            for _ in range(3):
                r = self._ip("netns", "pids", self.name, check=False)
                pids = [int(x) for x in r.stdout.split()] if r.returncode == 0 else []
                pids = [p for p in pids if p != os.getpid()]
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.2)
            r = self._ip("netns", "del", self.name, check=False)
            if r.returncode != 0:
                errors.append("netns del: " + r.stderr.decode())
        shutil.rmtree(self.etc, ignore_errors=True)
        if os.environ.get("LUNAR_LAB_KEEP_STATE") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            sys.stderr.write("lab %s down: %s\n" % (self.name, "; ".join(errors)))

    def install_cleanup(self):
        """atexit + SIGTERM/SIGHUP handlers that bring this lab down (for owners)."""
        atexit.register(self.down)

        def on_signal(signum, frame):
            raise KeyboardInterrupt("signal %d" % signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    signal.signal(sig, on_signal)
            except (ValueError, OSError):
                pass  # not the main thread

    # ---- running programs in the lab -------------------------------------------
    def env(self, extra=None, preload=True, proxy=True, debug=False):
        """The environment a program gets in run(): sanitized, plus the library's
        settings. extra values of None remove a variable."""
        env = _sanitized_env()
        if preload:
            env["LD_PRELOAD"] = self.lib
        if proxy:
            env["LUNAR_PROXY_HOST"] = PROXY_HOST
        if debug:
            env["LUNAR_INTERCEPTOR_LOG_LEVEL"] = "DEBUG"
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def argv(self, cmd, env):
        """ip netns exec NAME [env LD_PRELOAD=...] cmd: `ip` itself never gets the
        library, the program and its children do."""
        argv = self.exec_prefix()
        if "LD_PRELOAD" in env:
            argv += ["/usr/bin/env", "LD_PRELOAD=" + env["LD_PRELOAD"]]
        return argv + list(cmd)

    def run(self, cmd, env=None, preload=True, proxy=True, debug=False, timeout=60,
            input=None, cwd=None):
        """Run cmd inside the namespace (LD_PRELOAD=LUNAR_LIB unless preload=False,
        LUNAR_PROXY_HOST=127.0.0.1:8000 unless proxy=False, DEBUG log if debug).
        Returns Result (rc, out bytes, err bytes). On timeout the process group is
        killed and rc is -9 with a note on err."""
        full = self.env(env, preload=preload, proxy=proxy, debug=debug)
        pre = full.pop("LD_PRELOAD", None)
        argv = self.exec_prefix() + (["/usr/bin/env", "LD_PRELOAD=" + pre] if pre else []) + list(cmd)
        t0 = time.time()
        p = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full, cwd=cwd,
                             start_new_session=True)
        try:
            out, err = p.communicate(input=input, timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = p.communicate()
            rc = -9
            err += b"\n[lab] timeout after %ss: killed\n" % str(timeout).encode()
        return Result(rc, out, err, argv, time.time() - t0)

    def spawn(self, cmd, env=None, preload=True, proxy=True, debug=False, stdout=None,
              stderr=None, cwd=None):
        """Start cmd in the background inside the namespace; stopped by down() or by
        lab.stop(p). Returns the Popen (own process group)."""
        full = self.env(env, preload=preload, proxy=proxy, debug=debug)
        pre = full.pop("LD_PRELOAD", None)
        argv = self.exec_prefix() + (["/usr/bin/env", "LD_PRELOAD=" + pre] if pre else []) + list(cmd)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=stdout if stdout is not None else subprocess.DEVNULL,
                             stderr=stderr if stderr is not None else subprocess.DEVNULL,
                             env=full, cwd=cwd, start_new_session=True)
        self.extra.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=5):
        """Stop a process started by spawn() (its process group), SIGKILL after timeout."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            except ProcessLookupError:
                pass
        if p in self.extra:
            self.extra.remove(p)
        return p.returncode

    # ---- observing ------------------------------------------------------------
    def origin_log(self, contains=None):
        """Every request the origins logged (list of dicts), optionally only those whose
        path contains `contains`."""
        recs = _json_lines(self.origin_log_path)
        if contains is not None:
            recs = [r for r in recs if contains in r.get("path", "")]
        return recs

    def haproxy_log(self):
        try:
            with open(self.haproxy_log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def haproxy_stat(self):
        """HAProxy's `show stat` through its stats socket (haproxy.sock): one dict per
        row, keyed by the CSV's column names ("pxname", "svname", "type": "0" frontend,
        "1" backend, "2" server, "3" listener; "stot": sessions accepted, ...).
        Counters start at 0 when HAProxy (re)starts."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.haproxy_sock_path)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        lines = data.decode("utf-8", "replace").splitlines()
        if not lines or not lines[0].startswith("# "):
            raise LabError("show stat: unexpected answer %r" % data[:200])
        cols = lines[0][2:].split(",")
        return [dict(zip(cols, ln.split(","))) for ln in lines[1:] if ln.strip()]

    def haproxy_sessions(self, frontend="lunar_traffic", listener="tls"):
        """Connections HAProxy accepted on one named bind of `frontend` since it
        started (a failed TLS handshake, or a connection closed without a byte, counts
        too): the "stot" of a listener row of show stat, lunar_traffic's "plain" (8000)
        or "tls" (8400)."""
        for row in self.haproxy_stat():
            if row.get("pxname") == frontend and row.get("svname") == listener:
                return int(row.get("stot") or 0)
        raise LabError("no listener %s/%s in show stat" % (frontend, listener))

    def set_mode(self, mode):
        """Set the test proxy's mode (see testproxy.py)."""
        st, _, body = self.http("POST", "127.0.0.1", TESTPROXY_CONTROL, "/mode", body=mode.encode())
        if st != 200:
            raise LabError("testproxy mode %r: %s %s" % (mode, st, body))

    def set_testproxy_handshake(self, what):
        """managed | unmanaged | error:<status> | hang | close"""
        st, _, body = self.http("POST", "127.0.0.1", TESTPROXY_CONTROL, "/handshake", body=what.encode())
        if st != 200:
            raise LabError("testproxy handshake %r: %s %s" % (what, st, body))

    def testproxy_log(self):
        st, _, body = self.http("GET", "127.0.0.1", TESTPROXY_CONTROL, "/log")
        return json.loads(body)

    def testproxy_reset_log(self):
        self.http("POST", "127.0.0.1", TESTPROXY_CONTROL, "/reset-log", body=b"")

    def shell_exports(self):
        return "\n".join([
            "export LUNAR_LAB_NS=%s" % self.name,
            "export LUNAR_LAB_STATE=%s" % self.dir,
            "export LUNAR_LIB=%s" % self.lib,
            "export LUNAR_PROXY_HOST=%s" % PROXY_HOST,
            "export LUNAR_LAB_CA=%s" % self.ca_file,
            "export LUNAR_LAB_EXEC='ip netns exec %s'" % self.name,
            "# run a program in the lab with the library:",
            "#   $LUNAR_LAB_EXEC env LD_PRELOAD=$LUNAR_LIB curl -s http://api.example.test/",
            "# https, trusting the lab's test CA:",
            "#   $LUNAR_LAB_EXEC env LD_PRELOAD=$LUNAR_LIB curl -s --cacert $LUNAR_LAB_CA https://api.example.test/",
        ])


def serve_listener(kind, bind, log=None, ready=None):
    """The misbehaving proxies of Lab.start_listener() (run as `lab.py listener`,
    inside the namespace): one thread per connection, one JSON line per connection."""
    ip, port = bind.rsplit(":", 1)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, int(port)))
    srv.listen(64)
    lock = threading.Lock()

    def record(peer, first, **more):
        rec = dict(listener=kind, port=int(port), peer="%s:%d" % peer, first_bytes=first.hex(),
                   client_hello=len(first) > 5 and first[0] == 0x16 and first[5] == 0x01,
                   t=time.time(), **more)
        if log:
            with lock, open(log, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def handle(c, peer):
        first = b""
        try:
            if kind == "reset":
                c.settimeout(5)
                try:
                    first = c.recv(64)
                except OSError:
                    pass
                record(peer, first)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:  # silent: never a byte back; read (so the client never blocks) until EOF
                n = 0
                while True:
                    try:
                        d = c.recv(65536)
                    except OSError:
                        break
                    if not d:
                        break
                    first = first or d[:64]
                    n += len(d)
                record(peer, first, bytes=n)
        finally:
            c.close()

    if ready:
        with open(ready + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(ready + ".tmp", ready)
    while True:
        c, peer = srv.accept()
        threading.Thread(target=handle, args=(c, peer), daemon=True).start()


def gc(prefix=""):
    """Remove labs (state in /tmp/lunar-lab-NAME) whose NAME starts with prefix and
    whose owner process is gone. Labs made by the CLI `up` have no owner: kept."""
    removed = []
    for d in sorted(os.listdir("/tmp")):
        if not d.startswith("lunar-lab-" + prefix):
            continue
        name = d[len("lunar-lab-"):]
        try:
            with open(os.path.join("/tmp", d, "state.json")) as f:
                owner = json.load(f).get("owner_pid")
        except (OSError, ValueError):
            owner = 0  # no state: a half-made lab
        if owner is None or (os.path.exists("/proc/%d" % owner) and not Lab._is_zombie(owner)):
            continue  # detached (CLI) lab, or its owner is alive
        Lab(name).down()
        removed.append(name)
    return removed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for c in ("up", "down", "env", "status", "run", "mode"):
        sp = sub.add_parser(c)
        sp.add_argument("--name", required=True)
        if c == "up":
            sp.add_argument("--managed", action="store_true")
        if c == "run":
            sp.add_argument("--no-preload", action="store_true")
            sp.add_argument("--no-proxy", action="store_true")
            sp.add_argument("--debug", action="store_true")
            sp.add_argument("--timeout", type=float, default=60)
            sp.add_argument("command", nargs=argparse.REMAINDER)
        if c == "mode":
            sp.add_argument("mode")
    sp = sub.add_parser("gc")
    sp.add_argument("--prefix", default="", help="only labs whose name starts with this")
    sp = sub.add_parser("listener", help="(internal) a misbehaving proxy: Lab.start_listener")
    sp.add_argument("--kind", choices=sorted(LISTENERS), required=True)
    sp.add_argument("--bind", required=True, help="ip:port")
    sp.add_argument("--log", default=None)
    sp.add_argument("--ready", default=None, help="file written once listening")
    a = ap.parse_args(argv)
    if a.cmd == "gc":
        print("\n".join(gc(a.prefix)))
        return 0
    if a.cmd == "listener":
        try:
            serve_listener(a.kind, a.bind, a.log, a.ready)
        except KeyboardInterrupt:
            pass
        return 0
    lab = Lab(a.name, managed=getattr(a, "managed", False))
    if a.cmd == "up":
        lab.up()
        # owner is this CLI process, which exits now: record the lab as detached
        st = lab._load_state()
        st["owner_pid"] = None
        lab._save_state(st)
        print(lab.shell_exports())
    elif a.cmd == "down":
        lab.down()
    elif a.cmd == "env":
        print(lab.shell_exports())
    elif a.cmd == "status":
        st = lab._load_state()
        print("namespace %s: %s" % (lab.name, "present" if lab.exists() else "absent"))
        for svc, pid in sorted(st.get("pids", {}).items()):
            print("  %-16s pid %-7s %s" % (svc, pid, "running" if lab._pid_in_ns(pid) else "DEAD"))
    elif a.cmd == "mode":
        lab.set_mode(a.mode)
    elif a.cmd == "run":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        r = lab.run(cmd, preload=not a.no_preload, proxy=not a.no_proxy, debug=a.debug,
                    timeout=a.timeout)
        sys.stdout.buffer.write(r.out)
        sys.stderr.buffer.write(r.err)
        return r.rc if r.rc >= 0 else 124
    return 0


if __name__ == "__main__":
    sys.exit(main())
