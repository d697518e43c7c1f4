"""Issue 8: the library never breaks its host process and never leaks.

- item 1: a setuid program loaded with the library through /etc/ld.so.preload, run by
  an unprivileged user whose LUNAR_PROXY_HOST points at a listener of their own: the
  library is inert in secure-execution mode, the listener gets nothing.
- item 2: a fork while other threads are inside the library's first set-up: the child
  never hangs (c-tests/fork_during_setup.c).

Everything runs in the session lab's network namespace. /etc/ld.so.preload is never
touched: the setuid test works in a private mount namespace where a temporary file is
bind-mounted over it (when the host has no such file, an overlay of /etc whose upper
layer is a temporary directory provides the mount point first).
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from conftest import REPO, describe

API_IP = "203.0.113.10"
CTESTS = os.path.join(REPO, "c-tests")
LISTENER_BODY = b'{"listener": "the user\'s own"}\n'


# ---- a listener of the unprivileged user's own ----------------------------------------

class Listener:
    """Two TCP listeners in the lab's namespace posing as Lunar Proxy (traffic and
    handshake port). Records every connection and request head; answers the handshake
    with {"managed": false} and any other request with LISTENER_BODY."""

    def __init__(self, lab):
        self.lab = lab
        self.connections = []   # (kind, head bytes)
        self.lock = threading.Lock()
        self.socks = lab.in_ns(lambda: [self._listen() for _ in range(2)])
        self.traffic_port = self.socks[0].getsockname()[1]
        self.handshake_port = self.socks[1].getsockname()[1]
        self.threads = [threading.Thread(target=self._serve, args=(s, k), daemon=True)
                        for s, k in zip(self.socks, ("traffic", "handshake"))]
        for t in self.threads:
            t.start()

    @staticmethod
    def _listen():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        s.settimeout(0.2)
        return s

    def _serve(self, sock, kind):
        while True:
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed by stop()
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                except OSError:
                    pass
                with self.lock:
                    self.connections.append((kind, head))
                body = b'{"managed": false}' if kind == "handshake" else LISTENER_BODY
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                 % (len(body), body))
                except OSError:
                    pass

    def env(self):
        return {"LUNAR_PROXY_HOST": "127.0.0.1:%d" % self.traffic_port,
                "LUNAR_HANDSHAKE_PORT": str(self.handshake_port),
                "LUNAR_INTERCEPTOR_LOG_LEVEL": "DEBUG"}

    def seen(self):
        with self.lock:
            return list(self.connections)

    def stop(self):
        for s in self.socks:
            s.close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def listener(lab):
    li = Listener(lab)
    try:
        yield li
    finally:
        li.stop()


# ---- item 1: setuid ---------------------------------------------------------------------

# In a private mount namespace (inside the lab's network namespace): give
# /etc/ld.so.preload our temporary file, then run the program as nobody.
# $1 the temporary directory, $2 the program's name in it, the rest its arguments.
PRELOAD_SCRIPT = r'''
d=$1; prog=$2; shift 2
if [ ! -e /etc/ld.so.preload ]; then
    # No file to bind over: an overlay of /etc whose upper layer is $d/upper makes the
    # mount point there (the real /etc is only the read-only lower layer).
    mount -t overlay lunar-test -o "lowerdir=/etc,upperdir=$d/upper,workdir=$d/work" /etc
    [ "$(stat -f -c %T /etc)" = overlayfs ] || exit 97
    : > /etc/ld.so.preload
fi
mount --bind "$d/ld.so.preload" /etc/ld.so.preload
exec setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$d/$prog" "$@"
'''


def suid_capable_tmpdir():
    for base in ("/tmp", "/var/tmp"):
        if os.path.isdir(base) and not os.statvfs(base).f_flag & os.ST_NOSUID:
            return tempfile.mkdtemp(prefix="lunar-setuid-", dir=base)
    pytest.skip("no temporary directory on a filesystem without nosuid")


@pytest.fixture
def setuid_dir(lab, need_lib):
    """A world-readable temporary directory holding: setuid_fetch (root, mode 4755),
    plain_fetch (the same program, mode 0755), a copy of the library, ld.so.preload
    naming that copy by absolute path, and the overlay's upper and work directories."""
    d = suid_capable_tmpdir()
    try:
        os.chmod(d, 0o755)
        prog = os.path.join(d, "setuid_fetch")
        r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11",
                            "-I", CTESTS, "-o", prog, os.path.join(CTESTS, "setuid_fetch.c")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert r.returncode == 0, r.stdout.decode()
        shutil.copy(prog, os.path.join(d, "plain_fetch"))
        os.chown(prog, 0, 0)
        os.chmod(prog, 0o4755)
        os.chmod(os.path.join(d, "plain_fetch"), 0o755)
        lib = os.path.join(d, "liblunar_intercept.so")
        shutil.copy(lab.lib, lib)
        os.chmod(lib, 0o755)
        with open(os.path.join(d, "ld.so.preload"), "w") as f:
            f.write(lib + "\n")
        os.chmod(os.path.join(d, "ld.so.preload"), 0o644)
        os.mkdir(os.path.join(d, "upper"), 0o755)
        os.mkdir(os.path.join(d, "work"), 0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_preloaded(lab, d, prog, env, path):
    cmd = ["unshare", "--mount", "--propagation", "private", "--",
           "/bin/sh", "-ec", PRELOAD_SCRIPT, "sh", d, prog, API_IP, "80", path]
    return lab.run(cmd, env=env, preload=False, proxy=False, timeout=30)


def origin_echo(res):
    assert res.rc == 0, describe(res)
    return json.loads(res.out)


def header(echo, name):
    return [v for k, v in echo["headers"] if k.lower() == name]


def test_setuid_program_ignores_the_users_environment(lab, setuid_dir, listener, tag):
    """Item 1. A setuid-root program, the library loaded into it through
    /etc/ld.so.preload, run by nobody with LUNAR_PROXY_HOST pointing at nobody's
    listener: the listener gets nothing (not the request, its Authorization header, nor
    a handshake), the program gets the origin's answer, and the library says nothing.
    The same program without the setuid bit, same environment, IS diverted to the
    listener (so this test can fail)."""
    env = listener.env()

    plain = run_preloaded(lab, setuid_dir, "plain_fetch", env, tag + "/plain")
    assert "at_secure=0 preloaded=1 uid=65534 euid=65534" in plain.text_err, describe(plain)
    assert plain.rc == 0 and plain.out == LISTENER_BODY, \
        "control run: the non-setuid program was not diverted to the listener\n" + describe(plain)
    heads = [h for k, h in listener.seen() if k == "traffic"]
    assert len(heads) == 1 and b"Authorization: Bearer secret" in heads[0], listener.seen()

    before = len(listener.seen())
    res = run_preloaded(lab, setuid_dir, "setuid_fetch", env, tag + "/setuid")
    assert "at_secure=1 preloaded=1 uid=65534 euid=0" in res.text_err, \
        "the setuid program did not run in secure-execution mode with the library\n" + describe(res)
    new = listener.seen()[before:]
    assert new == [], "the setuid program's traffic reached the user's listener: %r\n%s" % (
        new, describe(res))
    echo = origin_echo(res)
    assert echo["server"] == API_IP + ":80" and echo["path"] == tag + "/setuid", echo
    assert header(echo, "authorization") == ["Bearer secret"], echo
    assert not [k for k, _ in echo["headers"] if k.lower().startswith(("x-lunar-", "x-seen-"))], echo
    assert "lunar-intercept" not in res.text_err, "the library spoke in secure-execution mode\n" + describe(res)


# ---- item 2: fork during the first set-up -----------------------------------------------

@pytest.fixture(scope="module")
def fork_prog():
    r = subprocess.run([os.path.join(CTESTS, "build.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert r.returncode == 0, "c-tests/build.sh failed:\n" + r.stdout.decode()
    return os.path.join(CTESTS, "bin", "fork_during_setup")


FORK_RUNS = 20     # program runs
FORK_ROUNDS = 3    # fresh worker processes per run: each one a first set-up raced by forks
FORK_THREADS, FORK_CHILDREN = 8, 6


def test_fork_during_first_setup_never_hangs(lab, need_lib, fork_prog, tag):
    """Item 2. 8 threads make a process's first connects (the library's first set-up
    and its handshake) while the main thread forks: every child makes its own request
    and exits, none hangs (c-tests/fork_during_setup.c waits 10 s for each), and every
    request, the children's too, went through the proxy."""
    lab.start_haproxy()
    failed = []
    for run in range(FORK_RUNS):
        res = lab.run([fork_prog, API_IP, "80", "%s/run%d" % (tag, run), str(FORK_ROUNDS)],
                      timeout=FORK_ROUNDS * 30 + 10)
        if res.rc != 0:
            failed.append("run %d: rc %s: %s" % (run, res.rc, res.text_err.strip()[-600:]))
    assert not failed, "%d of %d runs failed (rc 3: a child hung):\n%s" % (
        len(failed), FORK_RUNS, "\n".join(failed))
    records = lab.origin_log(contains=tag)
    want = FORK_RUNS * FORK_ROUNDS * (FORK_THREADS + FORK_CHILDREN)
    assert len(records) == want, "%d requests at the origin, want %d" % (len(records), want)
    direct = [r for r in records if header(r, "x-via-haproxy") != ["1"]]
    assert not direct, "requests not diverted: %r" % [
        (r["path"], header(r, "x-ctest-seq")) for r in direct[:10]]


def test_a_full_stderr_pipe_never_stalls_the_program(lab, need_lib, tag):
    """The program's stderr is a pipe nobody reads, already full, and the proxy is down, so
    the library has a warning to log (the failsafe). curl itself writes nothing there
    (-s): without the library it would finish at once, so with it it must too. The warning
    is dropped, not waited for: curl gets the origin's answer (direct), exit 0. (Before:
    curl hung for good inside its connect, writing the warning.)"""
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)
        try:
            while True:
                os.write(write_end, b"x" * 65536)
        except BlockingIOError:
            pass
        os.set_blocking(write_end, True)
        env = lab.env({"LUNAR_PROXY_HOST": "127.0.0.1:1"})
        argv = lab.exec_prefix() + ["/usr/bin/curl", "-s", "http://api.example.test" + tag]
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=write_end, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.communicate()
            pytest.fail("curl stalled writing to its full stderr pipe (killed after 20 s)")
        assert p.returncode == 0, out
        echo = json.loads(out)
        assert echo["path"] == tag and not header(echo, "x-seen-lunar-host"), out
    finally:
        os.close(read_end)
        os.close(write_end)
