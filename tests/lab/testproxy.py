#!/usr/bin/env python3
"""Scriptable Lunar-Proxy stand-in for fault tests (Python 3 stdlib only).

Traffic port (default 127.0.0.1:9000). Behaviour per request is set by the mode,
changed through the control API (default 127.0.0.1:9001):

  POST /mode  body one of
    pass                 forward like HAProxy: to the lab host named by x-lunar-host,
                         Host set from it, x-lunar-* removed, x-seen-lunar-* copies,
                         x-seen-src, x-seen-lunar-counts and x-via-testproxy: 1 added;
                         with x-lunar-scheme: https over TLS to the https origin
                         (--tls-hosts), verified with --cafile and the host name
                         (a failed verification: 503 x-lunar-error: 2)
    error:<code>         read the full request, answer 503 with x-lunar-error: <code>
    close                read the full request, close without answering (FIN)
    close-head           read the request head only, then close: mid-request for a
                         request with a body (the unread body makes the close a RST)
    reset                read the full request, then RST (SO_LINGER 0)
    down                 RST every new connection at once, before reading
    hang                 read the request, never answer (until the peer closes)
    stall                read the request head only, then nothing more: the client's
                         writes of its body fill the socket buffers and block (until
                         the peer closes)
    head-part-close      read the full request, send the first 22 bytes of a response
                         head (b"HTTP/1.1 200 OK\r\nCont"), then close (FIN)
    head-part-reset      the same, then RST (SO_LINGER 0)
    head-part-hang       the same, then nothing more (until the peer closes)
    body-part-close      read the full request, answer 200 with Content-Length: 100 and
                         10 bytes of body, then close (FIN): an answer cut short
    blackhole            stop accepting: the listener is replaced by one with
                         backlog 0 whose queue is kept full, so new connects hang
    retry:<sec>:<count>  answer 429 with x-lunar-retry-after: <sec> and
                         x-lunar-sequence-id: <id> <count> times, then pass
    random[:<seed>]      per connection, one of pass/down/error:2/close at random
    pass-seq             pass, the answer carrying x-lunar-sequence-id: <id> (as a
                         proxy's final answer after retries may)
    continue:<mode>      <mode>, but a request's `Expect: 100-continue` is answered only
                         with the final answer: `100 Continue` and it in one write
  GET  /mode          current mode
  GET  /log           JSON list of every request received (kind "traffic" or
                      "handshake"; method, path, headers [[k, v]...], body_sha256,
                      body_len, peer, mode, action), and of every connection this proxy
                      ended on an error of its own (kind "conn-end"; peer, last_path,
                      error: an answer it could not send, say)
  POST /reset-log     empty the log
  POST /handshake     body: managed | unmanaged | error:<status> | hang | close
Handshake port (default 127.0.0.1:9081): GET /handshake -> {"managed": ...},
GET /healthcheck -> "proxy is up".
"""
import argparse
import hashlib
import json
import os
import random
import select
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import socketserver

STATE = {
    "mode": "pass",
    "retry_left": 0,
    "handshake": "unmanaged",
    "rng": random.Random(1),
}
LOCK = threading.Lock()
LOG = []
HOSTS = {}
TLS_HOSTS = {}
TLS_CTX = [None]  # ssl.SSLContext verifying the https origins (--cafile)
STOP = threading.Event()


def log_rec(rec):
    rec["t"] = time.time()
    with LOCK:
        LOG.append(rec)


def parse_addr(s):
    ip, port = s.rsplit(":", 1)
    return ip.strip("[]"), int(port)


class Request:
    expects_continue = False


class LateContinue:
    """A socket whose first write is preceded, in the same write, by `100 Continue`."""

    def __init__(self, sock):
        self.sock = sock
        self.pending = b"HTTP/1.1 100 Continue\r\n\r\n"

    def sendall(self, data):
        data, self.pending = self.pending + data, b""
        self.sock.sendall(data)


def read_request(f, sock, head_only=False, early_continue=True):
    """Read one request from buffered file f. Returns Request or None on EOF.
    head_only: stop after the head (the body, if any, is left unread).
    early_continue: answer `Expect: 100-continue` before reading the body."""
    line = f.readline(65537)
    while line in (b"\r\n", b"\n"):
        line = f.readline(65537)
    if not line:
        return None
    req = Request()
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line %r" % line)
    req.method, req.target, req.version = parts
    req.headers = []
    total = len(line)
    while True:
        h = f.readline(65537)
        if not h:
            raise ConnectionError("eof in head")
        total += len(h)
        if total > 65536 * 2:
            raise ValueError("head too large")
        if h in (b"\r\n", b"\n"):
            break
        k, _, v = h.decode("latin-1").partition(":")
        req.headers.append([k.strip(), v.strip()])
    hd = {}
    for k, v in req.headers:
        hd.setdefault(k.lower(), v)
    req.hd = hd
    req.chunked = "chunked" in hd.get("transfer-encoding", "").lower()
    if head_only:
        req.body = b""
        return req
    req.expects_continue = "100-continue" in hd.get("expect", "").lower()
    if req.expects_continue and early_continue:
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    te = hd.get("transfer-encoding", "").lower()
    req.chunked = "chunked" in te
    if req.chunked:
        parts = []
        while True:
            sl = f.readline(65537)
            if not sl:
                raise ConnectionError("eof in chunk size")
            n = int(sl.split(b";", 1)[0].strip() or b"0", 16)
            if n == 0:
                while True:
                    t = f.readline(65537)
                    if t in (b"\r\n", b"\n", b""):
                        break
                break
            d = f.read(n)
            if len(d) != n:
                raise ConnectionError("eof in chunk")
            parts.append(d)
            f.readline(3)
        req.body = b"".join(parts)
    elif "content-length" in hd:
        n = int(hd["content-length"])
        req.body = f.read(n) if n else b""
        if len(req.body) != n:
            raise ConnectionError("eof in body")
    else:
        req.body = b""
    return req


def send_simple(sock, status, reason, headers, body, keep=True):
    h = ["HTTP/1.1 %d %s" % (status, reason)]
    for k, v in headers:
        h.append("%s: %s" % (k, v))
    h.append("Content-Length: %d" % len(body))
    h.append("Connection: %s" % ("keep-alive" if keep else "close"))
    sock.sendall(("\r\n".join(h) + "\r\n\r\n").encode("latin-1") + body)


HEAD_PART = b"HTTP/1.1 200 OK\r\nCont"  # the head-part-* modes' partial response head


def hang_until_peer_closes(sock):
    while not STOP.is_set():
        r, _, _ = select.select([sock], [], [], 0.5)
        if r:
            try:
                if not sock.recv(65536):
                    break
            except OSError:
                break


def stall_until_peer_closes(sock):
    """Reads nothing: waits for the peer's FIN or RST beside the bytes it left unread."""
    watch = select.poll()
    watch.register(sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    while not STOP.is_set() and not watch.poll(500):
        pass


def rst_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def forward(req, peer):
    """Forward to the lab origin; returns (status, reason, headers, body) or None."""
    lh = req.hd.get("x-lunar-host")
    if lh is None:
        return (401, "Unauthorized", [["x-lunar-error", "1"]], b"missing x-lunar-host\n")
    https = req.hd.get("x-lunar-scheme", "").lower() == "https"
    dst = (TLS_HOSTS if https else HOSTS).get(lh.lower())
    if dst is None:
        return (503, "Service Unavailable", [["x-lunar-error", "5"]], b"could not resolve host\n")
    counts = {}
    for k, _ in req.headers:
        kl = k.lower()
        if kl.startswith("x-lunar-"):
            counts[kl[8:]] = counts.get(kl[8:], 0) + 1
    out = ["%s %s HTTP/1.1" % (req.method, req.target), "Host: %s" % lh]
    drop = {"host", "connection", "keep-alive", "transfer-encoding", "content-length",
            "expect", "proxy-connection"}
    for k, v in req.headers:
        kl = k.lower()
        if kl in drop or kl.startswith("x-lunar-"):
            continue
        out.append("%s: %s" % (k, v))
    for name in ("host", "scheme", "interceptor", "req-id", "tenant-id", "sequence-id"):
        v = req.hd.get("x-lunar-" + name)
        if v is not None:
            out.append("x-seen-lunar-%s: %s" % (name, v))
    out.append("x-seen-lunar-counts: " + ",".join(
        "%s=%d" % (n, counts.get(n, 0)) for n in
        ("host", "scheme", "interceptor", "req-id", "tenant-id", "allow", "sequence-id")))
    out.append("x-seen-host: %s" % req.hd.get("host", ""))
    out.append("x-seen-src: %s" % peer)
    out.append("x-via-testproxy: 1")
    if req.body or req.method in ("POST", "PUT", "PATCH"):
        out.append("Content-Length: %d" % len(req.body))
    out.append("Connection: close")
    data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + req.body
    try:
        s = socket.create_connection(parse_addr(dst), timeout=10)
        if https:
            s = TLS_CTX[0].wrap_socket(s, server_hostname=lh.rsplit(":", 1)[0] if lh.count(":") == 1 else lh)
    except OSError:  # also ssl.SSLError: the origin's certificate did not verify
        return (503, "Service Unavailable", [["x-lunar-error", "2"]], b"endpoint cannot be reached\n")
    try:
        s.sendall(data)
        f = s.makefile("rb")
        sl = f.readline(65537).decode("latin-1").rstrip("\r\n")
        _, st, reason = (sl.split(" ", 2) + [""])[:3]
        hdrs = []
        while True:
            h = f.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            hdrs.append([k.strip(), v.strip()])
        hdl = {k.lower(): v for k, v in hdrs}
        if req.method == "HEAD":
            body = b""
        elif "chunked" in hdl.get("transfer-encoding", "").lower():
            parts = []
            while True:
                n = int(f.readline(65537).split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    f.readline(65537)
                    break
                parts.append(f.read(n))
                f.readline(3)
            body = b"".join(parts)
        elif "content-length" in hdl:
            body = f.read(int(hdl["content-length"]))
        else:
            body = f.read()
        keep = [[k, v] for k, v in hdrs
                if k.lower() not in ("connection", "transfer-encoding", "content-length", "keep-alive")]
        if req.method == "HEAD" and "content-length" in hdl:
            keep.append(["Content-Length", hdl["content-length"]])
            return (int(st), reason, keep, None)
        return (int(st), reason, keep, body)
    except (OSError, ValueError):
        return (504, "Gateway Timeout", [["x-lunar-error", "3"]], b"gateway timeout\n")
    finally:
        s.close()


def send_response(sock, status, reason, headers, body, keep):
    if body is None:  # HEAD: headers carry the original Content-Length
        h = ["HTTP/1.1 %d %s" % (status, reason)] + ["%s: %s" % (k, v) for k, v in headers]
        h.append("Connection: %s" % ("keep-alive" if keep else "close"))
        sock.sendall(("\r\n".join(h) + "\r\n\r\n").encode("latin-1"))
    else:
        send_simple(sock, status, reason, headers, body, keep)


def pick_random_mode():
    with LOCK:
        return STATE["rng"].choice(["pass", "down", "error:2", "close"])


def handle_conn(sock, addr):
    peer = "%s:%d" % addr[:2]
    with LOCK:
        base = STATE["mode"]
    conn_mode = pick_random_mode() if base.startswith("random") else None
    if (conn_mode or base) == "down":
        log_rec({"kind": "traffic", "peer": peer, "mode": "down", "action": "rst-at-accept"})
        rst_close(sock)
        return
    f = sock.makefile("rb")
    last_path = None
    try:
        while not STOP.is_set():
            with LOCK:
                head_only = (conn_mode or STATE["mode"]) in ("close-head", "stall")
                early_continue = not (conn_mode or STATE["mode"]).startswith("continue:")
            try:
                req = read_request(f, sock, head_only, early_continue)
            except (ConnectionError, ValueError, OSError) as e:
                log_rec({"kind": "traffic", "peer": peer, "error": str(e)})
                break
            if req is None:
                break
            last_path = req.target
            with LOCK:
                mode = conn_mode or STATE["mode"]
                if mode.startswith("random"):
                    mode = "pass"
                out = sock
                if mode.startswith("continue:"):
                    mode = mode.split(":", 1)[1]
                    if req.expects_continue:
                        out = LateContinue(sock)
                retry = None
                if mode.startswith("retry:"):
                    if STATE["retry_left"] > 0:
                        STATE["retry_left"] -= 1
                        retry = mode.split(":")[1]
                    mode = "pass"
            rec = {"kind": "traffic", "peer": peer, "mode": mode, "method": req.method,
                   "path": req.target, "version": req.version, "headers": req.headers,
                   "body_sha256": hashlib.sha256(req.body).hexdigest(),
                   "body_len": len(req.body), "chunked": req.chunked}
            client_keep = "close" not in req.hd.get("connection", "").lower() and req.version == "HTTP/1.1"
            if retry is not None:
                rec["action"] = "retry-after"
                log_rec(rec)
                send_simple(out, 429, "Too Many Requests",
                            [["x-lunar-retry-after", retry],
                             ["x-lunar-sequence-id", "seq-" + uuid.uuid4().hex[:12]]],
                            b"retry later\n", client_keep)
            elif mode in ("pass", "pass-seq"):
                rec["action"] = mode
                log_rec(rec)
                st, reason, hdrs, body = forward(req, peer)
                if mode == "pass-seq":
                    hdrs = hdrs + [["x-lunar-sequence-id", "seq-" + uuid.uuid4().hex[:12]]]
                send_response(out, st, reason, hdrs, body, client_keep)
            elif mode.startswith("error:"):
                code = mode.split(":", 1)[1]
                rec["action"] = "error"
                log_rec(rec)
                send_simple(out, 503, "Service Unavailable", [["x-lunar-error", code]],
                            b"lunar error %s\n" % code.encode(), client_keep)
            elif mode == "close":
                rec["action"] = "close"
                log_rec(rec)
                sock.shutdown(socket.SHUT_RDWR)
                break
            elif mode == "close-head":
                rec["action"] = "close-head"
                log_rec(rec)
                sock.shutdown(socket.SHUT_RDWR)
                break
            elif mode == "reset":
                rec["action"] = "reset"
                log_rec(rec)
                rst_close(sock)
                return
            elif mode == "down":
                # set while this connection was open: a proxy going down resets its
                # established connections too
                rec["action"] = "rst-established"
                log_rec(rec)
                rst_close(sock)
                return
            elif mode == "hang":
                rec["action"] = "hang"
                log_rec(rec)
                hang_until_peer_closes(sock)
                break
            elif mode == "stall":
                rec["action"] = "stall"
                log_rec(rec)
                stall_until_peer_closes(sock)
                break
            elif mode == "body-part-close":
                rec["action"] = mode
                log_rec(rec)
                out.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                time.sleep(0.05)  # the part arrives in its own segment, then the FIN
                sock.shutdown(socket.SHUT_RDWR)
                break
            elif mode in ("head-part-close", "head-part-reset", "head-part-hang"):
                rec["action"] = mode
                log_rec(rec)
                sock.sendall(HEAD_PART)
                if mode == "head-part-close":
                    time.sleep(0.05)  # the part arrives in its own segment, then the FIN
                    sock.shutdown(socket.SHUT_RDWR)
                    break
                if mode == "head-part-reset":
                    time.sleep(0.05)  # the part is delivered before the RST
                    rst_close(sock)
                    return
                hang_until_peer_closes(sock)
                break
            else:
                rec["action"] = "unknown-mode"
                log_rec(rec)
                send_simple(sock, 500, "Internal Server Error", [], b"bad mode\n", False)
                break
            if not client_keep:
                break
    except Exception as e:  # noqa: BLE001 -- recorded: a test shows why its peer saw a close
        log_rec({"kind": "conn-end", "peer": peer, "last_path": last_path, "error": repr(e)})
    finally:
        try:
            sock.close()
        except OSError:
            pass


def new_listener(addr, backlog):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(backlog)
    return s


def accept_loop(addr, lst):
    fillers = []
    blackholed = False
    while not STOP.is_set():
        with LOCK:
            want_bh = STATE["mode"] == "blackhole"
        if want_bh and not blackholed:
            lst.close()
            lst = new_listener(addr, 0)
            for _ in range(2):  # fill the accept queue: further SYNs are dropped
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.setblocking(False)
                try:
                    c.connect(addr)
                except (BlockingIOError, OSError):
                    pass
                fillers.append(c)
            blackholed = True
        elif not want_bh and blackholed:
            for c in fillers:
                c.close()
            fillers = []
            lst.close()
            lst = new_listener(addr, 256)
            blackholed = False
        if blackholed:
            time.sleep(0.1)
            continue
        r, _, _ = select.select([lst], [], [], 0.1)
        if not r:
            continue
        try:
            c, a = lst.accept()
        except OSError:
            continue
        threading.Thread(target=handle_conn, args=(c, a), daemon=True).start()


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _reply(self, status, body, ctype="text/plain"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode().strip() if n else ""

    def do_GET(self):
        if self.path == "/mode":
            with LOCK:
                return self._reply(200, STATE["mode"] + "\n")
        if self.path == "/log":
            with LOCK:
                data = json.dumps(LOG)
            return self._reply(200, data, "application/json")
        self._reply(404, "not found\n")

    def do_POST(self):
        body = self._body()
        if self.path == "/mode":
            inner = body[len("continue:"):] if body.startswith("continue:") else body
            ok = (inner in ("pass", "pass-seq", "close", "close-head", "reset", "down", "hang",
                            "stall", "blackhole", "head-part-close", "head-part-reset", "head-part-hang",
                            "body-part-close")
                  or inner.startswith("error:") or inner.startswith("random"))
            with LOCK:
                if inner.startswith("retry:"):
                    try:
                        _, sec, cnt = inner.split(":")
                        float(sec)
                        STATE["retry_left"] = int(cnt)
                        ok = True
                    except ValueError:
                        ok = False
                if body.startswith("random:"):
                    STATE["rng"] = random.Random(body.split(":", 1)[1])
                if ok:
                    STATE["mode"] = body
            if not ok:
                return self._reply(400, "bad mode %r\n" % body)
            time.sleep(0.15 if body == "blackhole" else 0)  # let the accept loop switch
            return self._reply(200, "ok\n")
        if self.path == "/reset-log":
            with LOCK:
                LOG.clear()
            return self._reply(200, "ok\n")
        if self.path == "/handshake":
            with LOCK:
                STATE["handshake"] = body
            return self._reply(200, "ok\n")
        self._reply(404, "not found\n")


class Handshake(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        log_rec({"kind": "handshake", "method": "GET", "path": self.path,
                 "headers": [[k, v] for k, v in self.headers.items()],
                 "peer": "%s:%d" % self.client_address[:2]})
        if self.path.startswith("/healthcheck"):
            body = b"proxy is up"
            st = 200
        elif self.path.startswith("/handshake"):
            with LOCK:
                hs = STATE["handshake"]
            if hs == "hang":
                time.sleep(60)
                return
            if hs == "close":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if hs.startswith("error:"):
                st = int(hs.split(":")[1])
                body = b"handshake error\n"
            else:
                st = 200
                body = json.dumps({"managed": hs == "managed"}).encode()
        else:
            st, body = 404, b"not found\n"
        self.send_response(st)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Srv(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="127.0.0.1:9000")
    ap.add_argument("--control", default="127.0.0.1:9001")
    ap.add_argument("--handshake", default="127.0.0.1:9081")
    ap.add_argument("--hosts", required=True, help="JSON map host[:port] -> ip:port")
    ap.add_argument("--tls-hosts", default=None, help="JSON map host[:port] -> ip:port for https")
    ap.add_argument("--cafile", default=None, help="CA that https origins must chain to")
    ap.add_argument("--mode", default="pass")
    ap.add_argument("--ready", default=None)
    a = ap.parse_args()
    with open(a.hosts) as f:
        HOSTS.update({k.lower(): v for k, v in json.load(f).items()})
    if a.tls_hosts:
        with open(a.tls_hosts) as f:
            TLS_HOSTS.update({k.lower(): v for k, v in json.load(f).items()})
        TLS_CTX[0] = ssl.create_default_context(cafile=a.cafile)
        TLS_CTX[0].set_alpn_protocols(["http/1.1"])
    STATE["mode"] = a.mode
    ctl = Srv(parse_addr(a.control), Control)
    hs = Srv(parse_addr(a.handshake), Handshake)
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    threading.Thread(target=hs.serve_forever, daemon=True).start()
    lst = new_listener(parse_addr(a.bind), 256)
    t = threading.Thread(target=accept_loop, args=(parse_addr(a.bind), lst), daemon=True)
    t.start()
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(a.ready + ".tmp", a.ready)
    try:
        while t.is_alive():
            t.join(0.5)
    except KeyboardInterrupt:
        pass
    STOP.set()


if __name__ == "__main__":
    sys.exit(main())
