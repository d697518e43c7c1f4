#!/usr/bin/env python3
"""Lab origin servers (Python 3 stdlib only).

kinds:
  http    threaded HTTP/1.1 echo server (keep-alive, Content-Length and chunked
          request bodies, Expect: 100-continue, HEAD). Answers every request with
          one line of JSON (ending in "\\n"):
            {"server": "ip:port", "method", "path", "version", "headers": [[name,
             value], ...] (as received, in order), "body_sha256", "body_len",
             "chunked": bool, "peer": "ip:port", "conn_seq": n}
          Special paths:
            /bytes/N     N deterministic bytes (see pattern_bytes), Content-Length
            /chunked/N   N deterministic bytes sent with chunked encoding
            /status/N    the echo JSON with status N
            /delay/MS    the echo JSON after MS milliseconds
            /close       the echo JSON, then the connection is closed
          Every request is logged as one JSON line to --log.
          With --tls-cert/--tls-key the same server speaks https (TLS 1.2/1.3,
          ALPN http/1.1 only): the JSON then has "scheme": "https", "sni" (the
          name the client sent) and "tls_version"; plain ones have "scheme":
          "http". A failed TLS handshake is logged as {"server", "scheme",
          "peer", "tls_error"} (no "path").
  echo    client-speaks-first binary protocol: every byte received is sent back.
  banner  server-speaks-first line protocol: "220 <name> ready\\r\\n" on connect,
          then "250 <line>" for every line, "221 bye" and close on "QUIT".
  echo and banner with --tls-cert/--tls-key: the same protocols inside TLS (TLS 1.2+,
          no ALPN). Before the handshake the server peeks at the first bytes the
          client sent: a TLS record starts with 0x16 (handshake); anything else is
          plaintext that left the client outside TLS. Each connection is logged as
          one JSON line {"server", "kind", "scheme": "https", "peer", "first_bytes"
          (hex, up to 16), "plaintext": bool, and "plaintext_data" (up to 200
          bytes, latin-1) when plaintext, "tls_error" when the handshake failed,
          else "sni", "tls_version", "bytes" and "data" (what came in inside TLS,
          latin-1, up to 2000 bytes; banner: "lines")}.
"""
import argparse
import hashlib
import io
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = bytes(range(251))


def fmt_addr(addr):
    host, port = addr[0], addr[1]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def pattern_bytes(n):
    """The deterministic content of /bytes/N: bytes 0..250 repeated."""
    reps = n // len(PATTERN) + 1
    return (PATTERN * reps)[:n]


class Log:
    def __init__(self, path):
        # one O_APPEND write per record: several servers share one log file
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None

    def write(self, rec):
        if self.fd is None:
            return
        rec["t"] = time.time()
        os.write(self.fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lab-origin/1"
    sys_version = ""

    def setup(self):
        self.tls_ok = True
        if self.server.tls is not None:
            # the handshake runs here, in the connection's own thread
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (OSError, ValueError) as e:
                self.tls_ok = False
                self.server.log.write({"server": self.server.name, "scheme": "https",
                                       "peer": fmt_addr(self.client_address),
                                       "tls_error": str(e)})
            self.request.settimeout(None)
        super().setup()
        self.conn_seq = 0

    def handle(self):
        if self.tls_ok:
            super().handle()

    def tls_fields(self):
        if self.server.tls is None:
            return {"scheme": "http"}
        return {"scheme": "https", "sni": getattr(self.request, "lab_sni", None),
                "tls_version": self.request.version()}

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunk size")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until empty line
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                data = self.rfile.read(size)
                if len(data) != size:
                    raise ConnectionError("eof in chunk")
                parts.append(data)
                self.rfile.readline(3)  # CRLF after chunk
            return b"".join(parts), True
        cl = self.headers.get("Content-Length")
        if cl is not None:
            n = int(cl)
            data = self.rfile.read(n) if n else b""
            if len(data) != n:
                raise ConnectionError("eof in body")
            return data, False
        return b"", False

    def _handle(self):
        self.conn_seq += 1
        try:
            body, chunked = self._read_body()
        except (ConnectionError, ValueError) as e:
            self.server.log.write({"server": self.server.name, "error": str(e),
                                   "method": self.command, "path": self.path})
            self.close_connection = True
            return
        srv = self.server.name
        peer = fmt_addr(self.client_address)
        rec = {
            "server": srv,
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_len": len(body),
            "chunked": chunked,
            "peer": peer,
            "conn_seq": self.conn_seq,
        }
        rec.update(self.tls_fields())
        self.server.log.write(dict(rec))
        path = self.path.split("?", 1)[0]
        if path == "/upgrade" and self.headers.get("Upgrade"):
            self._switch_to_echo()
            return
        status = 200
        payload = None
        chunked_out = False
        close = False
        ctype = "application/json"
        try:
            if path.startswith("/bytes/"):
                payload = pattern_bytes(int(path[len("/bytes/"):]))
                ctype = "application/octet-stream"
            elif path.startswith("/chunked/"):
                payload = pattern_bytes(int(path[len("/chunked/"):]))
                ctype = "application/octet-stream"
                chunked_out = True
            elif path.startswith("/status/"):
                status = int(path[len("/status/"):])
            elif path.startswith("/delay/"):
                time.sleep(int(path[len("/delay/"):]) / 1000.0)
            elif path == "/close":
                close = True
        except ValueError:
            status = 400
        if payload is None:
            payload = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("X-Origin", srv)
        if chunked_out:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return
        if chunked_out:
            for i in range(0, len(payload), 1000):
                c = payload[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(payload)

    def _switch_to_echo(self):
        """/upgrade with an `Upgrade` header: 101 to that protocol, which echoes every byte
        until the client closes (the client writes only after the 101)."""
        self.send_response(101)
        self.send_header("Upgrade", self.headers["Upgrade"])
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            self.request.sendall(data)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class HTTPOrigin(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    tls = None  # ssl.SSLContext for https

    def server_bind(self):
        # HTTPServer.server_bind would do a reverse DNS lookup (getfqdn)
        socketserver.TCPServer.server_bind(self)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls is not None:
            # handshake later, in the handler's thread (EchoHandler.setup)
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


def tls_context(cert, key, alpn=("http/1.1",)):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))

    def remember_sni(sslsock, name, _ctx):
        try:
            sslsock.lab_sni = name
        except AttributeError:
            pass
    ctx.sni_callback = remember_sni
    return ctx


def tls_line_accept(handler, kind):
    """For the echo/banner kinds over TLS: peek at what the client sent first (a TLS
    record, or plaintext), then the server side of the handshake. Returns (ssl
    socket, log record), or (None, record) after logging a failure."""
    raw = handler.request
    rec = {"server": handler.server.name, "kind": kind, "scheme": "https",
           "peer": fmt_addr(handler.client_address)}
    raw.settimeout(10)
    try:
        first = raw.recv(200, socket.MSG_PEEK)
    except OSError as e:
        first = b""
        rec["peek_error"] = str(e)
    rec["first_bytes"] = first[:16].hex()
    rec["plaintext"] = bool(first) and first[:1] != b"\x16"
    if rec["plaintext"]:
        rec["plaintext_data"] = first.decode("latin-1")
    try:
        tls = handler.server.tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        tls.do_handshake()
    except (OSError, ValueError) as e:
        rec["tls_error"] = str(e)
        handler.server.log.write(rec)
        return None, rec
    tls.settimeout(None)
    rec["sni"] = getattr(tls, "lab_sni", None)
    rec["tls_version"] = tls.version()
    return tls, rec


class EchoLine(socketserver.BaseRequestHandler):
    def handle(self):
        if self.server.tls is not None:
            return self.handle_tls()
        s = self.request
        total = 0
        while True:
            try:
                d = s.recv(65536)
            except OSError:
                break
            if not d:
                break
            total += len(d)
            s.sendall(d)
        self.server.log.write({"server": self.server.name, "kind": "echo",
                               "peer": fmt_addr(self.client_address), "bytes": total})

    def handle_tls(self):
        s, rec = tls_line_accept(self, "echo")
        if s is None:
            return
        total, data = 0, b""
        while True:
            try:
                d = s.recv(65536)
            except OSError as e:
                rec["error"] = str(e)
                break
            if not d:
                break
            total += len(d)
            data = (data + d)[:2000]
            try:
                s.sendall(d)
            except OSError as e:
                rec["error"] = str(e)
                break
        rec["bytes"] = total
        rec["data"] = data.decode("latin-1")
        self.server.log.write(rec)
        try:
            s.close()
        except OSError:
            pass


class BannerLine(socketserver.StreamRequestHandler):
    def setup(self):
        self.tls_rec = None
        if self.server.tls is not None:
            s, self.tls_rec = tls_line_accept(self, "banner")
            self.tls_failed = s is None
            if self.tls_failed:  # logged; handle() ends at once
                self.rfile, self.wfile = io.BytesIO(), io.BytesIO()
                return
            self.request = s
        super().setup()

    def handle(self):
        if self.tls_rec is not None and self.tls_failed:
            return
        lines = []
        self.wfile.write(b"220 %s ready\r\n" % self.server.banner.encode())
        self.wfile.flush()
        while True:
            line = self.rfile.readline(65536)
            if not line:
                break
            text = line.rstrip(b"\r\n")
            lines.append(text.decode("latin-1"))
            if text.upper() == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                self.wfile.flush()
                break
            self.wfile.write(b"250 " + text + b"\r\n")
            self.wfile.flush()
        if self.tls_rec is not None:
            self.tls_rec["lines"] = lines
            self.server.log.write(self.tls_rec)
            return
        self.server.log.write({"server": self.server.name, "kind": "banner",
                               "peer": fmt_addr(self.client_address), "lines": lines})


class LineServer(socketserver.ThreadingTCPServer):
    tls = None  # ssl.SSLContext: the line protocol inside TLS
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["http", "echo", "banner"], default="http")
    ap.add_argument("--bind", required=True, help="ip:port")
    ap.add_argument("--log", default=None)
    ap.add_argument("--ready", default=None, help="file written once listening")
    ap.add_argument("--banner", default="banner.example.test")
    ap.add_argument("--tls-cert", default=None, help="PEM certificate: serve https (http kind)")
    ap.add_argument("--tls-key", default=None)
    a = ap.parse_args()
    ip, port = a.bind.rsplit(":", 1)
    ip = ip.strip("[]")
    if a.kind == "http":
        cls, handler = HTTPOrigin, EchoHandler
    else:
        cls, handler = LineServer, (EchoLine if a.kind == "echo" else BannerLine)
    if ":" in ip:
        cls = type(cls.__name__ + "6", (cls,), {"address_family": socket.AF_INET6})
    srv = cls((ip, int(port)), handler)
    srv.name = a.bind
    srv.banner = a.banner
    srv.log = Log(a.log)
    if a.tls_cert:
        if a.kind == "http":
            srv.tls = tls_context(a.tls_cert, a.tls_key or a.tls_cert)
        else:  # echo/banner inside TLS (no ALPN)
            srv.tls = tls_context(a.tls_cert, a.tls_key or a.tls_cert, alpn=None)
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(a.ready + ".tmp", a.ready)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
