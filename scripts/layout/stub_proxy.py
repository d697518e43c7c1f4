"""scripts/layout/profile.sh: a stand-in for Lunar Proxy that answers every request
(the handshake on :8081, any request on :8000) with 200 and a short body, keep-alive:
chunked when the path ends in /chunked, else with a Content-Length. A request body is
read and dropped. Like HAProxy it says `Connection: close` when it will close (a client
would otherwise send its next request on the closed connection: a failure of the proxy,
which the profile would then count as the common path), and it writes each answer in one
piece with Nagle's algorithm off (else a head and a body written apart wait ~40 ms for the
client's delayed ACK: a wrk run then profiles a few hundred requests, not thousands). A
path ending in /later is answered 20 ms late: a client reading at once then finds nothing
yet, as it does against a real proxy (a client under callgrind is slow enough to find
every quick answer already there, and the waiting path would be left out of the profile)."""
import http.server
import socketserver
import threading
import time


class Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # flushed once per request by BaseHTTPRequestHandler

    def do_GET(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/later"):
            time.sleep(0.02)
        body = b'{"managed": false}' if self.path.startswith("/handshake") else b"from the stub proxy\n"
        self.send_response(200)
        if self.close_connection:
            self.send_header("Connection", "close")
        if self.path.endswith("/chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


for port in (8000, 8081):
    server = Server(("127.0.0.1", port), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Event().wait()
