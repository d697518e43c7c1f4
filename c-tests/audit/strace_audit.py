#!/usr/bin/env python3
"""strace audit: which libc entry points real HTTP clients use on their TCP socket.

For each client, one GET http://api.example.test/ is traced with
    strace -f -k -yy -e trace=<network, I/O, fd-table, polling calls>
inside a network namespace this script creates (203.0.113.10 on the namespace
loopback, the lab's Python origin on :80). `-yy` decorates every fd with its socket
(so calls on the client's TCP socket are found, before and after connect), `-k` adds
the user-space stack, whose outermost libc frame is the libc function the program
called (strace alone shows syscalls: send() and sendto() are both sendto(2)).

The dynamic symbol imports of the code that makes the calls (nm -D) are listed too:
they show the exact symbol a hook must export (fcntl vs fcntl64, __recv_chk, ...).

Usage (root): python3 c-tests/audit/strace_audit.py [--out DIR] [--only NAME,...]
Prints a markdown table; raw traces go to DIR (default target/strace-audit).
Nothing leaves the namespace: the only server is the one started here.
"""
import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
ORIGIN = os.path.join(REPO, "tests", "lab", "origin.py")
IP, PORT, NAME = "203.0.113.10", 80, "api.example.test"
URL = "http://%s/audit" % NAME

TRACE_SET = ("network,read,write,readv,writev,pread64,pwrite64,preadv,pwritev,"
             "preadv2,pwritev2,close,close_range,dup,dup2,dup3,fcntl,poll,ppoll,"
             "select,pselect6,epoll_wait,epoll_pwait,epoll_pwait2,epoll_ctl,"
             "shutdown,ioctl,sendfile,splice,tee,vmsplice,copy_file_range,"
             "io_uring_setup,io_uring_enter")

NODE_HTTP = ("require('http').get(process.argv[1], r => { let n = 0; "
             "r.on('data', c => n += c.length); "
             "r.on('end', () => console.log('node-http', r.statusCode, n)); })")
NODE_FETCH = ("fetch(process.argv[1]).then(r => r.text().then(t => "
              "console.log('node-fetch', r.status, t.length)))")
PY_URLLIB = ("import sys, urllib.request; r = urllib.request.urlopen(sys.argv[1]); "
             "print('python-urllib', r.status, len(r.read()))")
RUBY_NETHTTP = ("require 'net/http'; r = Net::HTTP.get_response(URI(ARGV[0])); "
                "puts \"ruby-net-http #{r.code} #{r.body.bytesize}\"")
APT_HTTP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                        "e2e", "clients", "apt_http.py")
TCL_HTTP = os.path.join(os.path.dirname(APT_HTTP), "tcl_http.tcl")
PERL_TINY = ("use HTTP::Tiny; my $r = HTTP::Tiny->new->get($ARGV[0]); "
             "print \"perl-http-tiny $r->{status} \", length($r->{content}), \"\\n\";")


def clients(javadir):
    return [
        ("curl", ["curl", "-sS", "-o", "/dev/null", "-w", "curl %{http_code}\\n", URL]),
        ("wget", ["wget", "-q", "-O", "/dev/null", URL]),
        ("python3 urllib", ["/usr/bin/python3", "-c", PY_URLLIB, URL]),
        ("node http", ["/usr/bin/node", "-e", NODE_HTTP, URL]),
        ("node fetch (undici)", ["/usr/bin/node", "-e", NODE_FETCH, URL]),
        ("java HttpClient", ["java", "-Xshare:auto", "-cp", javadir, "JHttpClient", URL]),
        ("java HttpURLConnection", ["java", "-Xshare:auto", "-cp", javadir,
                                    "JUrlConnection", URL]),
        ("java HttpURLConnection keepAlive=false",
         ["java", "-Xshare:auto", "-Dhttp.keepAlive=false", "-cp", javadir,
          "JUrlConnection", URL]),
        ("perl HTTP::Tiny", ["perl", "-e", PERL_TINY, URL]),
        ("ruby Net::HTTP", ["ruby", "-e", RUBY_NETHTTP, URL]),
        ("apt http method", ["/usr/bin/python3", APT_HTTP, "GET", URL]),
        ("tcl http", ["tclsh", TCL_HTTP, "GET", URL]),
    ]


# ---- trace parsing ----------------------------------------------------------------

LINE = re.compile(r"^(\d+)\s+(.*)$")
CALL = re.compile(r"^([a-z_0-9]+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$")
FDDECOR = re.compile(r"(\d+)<TCP(?:v6)?:\[(.*?)\]>")
FRAME = re.compile(r"^\s*>\s+(\S+?)\(([^)+]*)(?:\+0x[0-9a-f]+)?\)")
LIBC = re.compile(r"/libc\.so\.6$|/libc-[0-9.]+\.so$")

# glibc-internal names the symboliser shows -> public entry point
ALIASES = {
    "__socket": "socket", "__connect": "connect", "__libc_connect": "connect",
    "__libc_fcntl64": "fcntl/fcntl64", "__fcntl": "fcntl", "fcntl64": "fcntl/fcntl64",
    "__close": "close", "__libc_close": "close", "__read": "read", "__libc_read": "read",
    "__write": "write", "__libc_write": "write", "__libc_send": "send", "__send": "send",
    "__libc_recv": "recv", "__recv": "recv", "__libc_sendto": "sendto",
    "__libc_recvfrom": "recvfrom", "__libc_sendmsg": "sendmsg", "__sendmsg": "sendmsg",
    "__libc_recvmsg": "recvmsg", "__recvmsg": "recvmsg", "__poll": "poll",
    "__libc_poll": "poll", "__dup2": "dup2", "__dup": "dup", "__ioctl": "ioctl",
    "__getsockname": "getsockname", "__getpeername": "getpeername",
    "__libc_readv": "readv", "__readv": "readv", "__libc_writev": "writev",
    "__writev": "writev", "__shutdown": "shutdown", "__setsockopt": "setsockopt",
    "__getsockopt": "getsockopt", "__epoll_ctl": "epoll_ctl",
    "__close_nocancel": "close(nocancel)", "__libc_accept": "accept",
}

FLAG_ARGS = {
    "sendto": 3, "recvfrom": 3, "sendmsg": 2, "recvmsg": 2, "send": 3, "recv": 3,
    "fcntl": 1, "setsockopt": (1, 2), "getsockopt": (1, 2), "ioctl": 1, "shutdown": 1,
    "epoll_ctl": 1, "dup3": 2,
}


def split_args(s):
    """Split a strace argument list at top-level commas (good enough for our use)."""
    out, depth, cur, q = [], 0, [], False
    i = 0
    while i < len(s):
        ch = s[i]
        if q:
            cur.append(ch)
            if ch == "\\" and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
            elif ch == '"':
                q = False
        elif ch == '"':
            q = True
            cur.append(ch)
        elif ch in "([{<":
            depth += 1
            cur.append(ch)
        elif ch == ">" and i > 0 and s[i - 1] in "-=":
            cur.append(ch)  # "->" in a socket decoration, "=>" in a value-result arg
        elif ch in ")]}>":
            depth -= 1
            if depth < 0:
                break
            cur.append(ch)
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        out.append("".join(cur).strip())
    return out


class Event:
    def __init__(self, pid, name, text):
        self.pid, self.name, self.text = pid, name, text
        self.frames = []

    def entry(self):
        """The outermost consecutive libc frame: what the program called."""
        last = None
        for obj, sym in self.frames:
            if LIBC.search(obj):
                last = sym or "?"
            else:
                break
        if last is None:
            if self.frames:
                obj, sym = self.frames[0]
                return "(no libc: %s%s)" % (os.path.basename(obj),
                                            "(" + sym + ")" if sym else "")
            return "?"
        return ALIASES.get(last, last)


def parse_trace(path):
    events, pending = [], {}
    last = None
    with open(path, errors="replace") as f:
        for raw in f:
            raw = raw.rstrip("\n")
            if raw.lstrip().startswith(">"):
                m = FRAME.match(raw)
                if m and last is not None:
                    last.frames.append((m.group(1), m.group(2)))
                continue
            m = LINE.match(raw)
            if not m:
                continue
            pid, rest = int(m.group(1)), m.group(2)
            r = RESUMED.match(rest)
            if r:
                ev = pending.pop(pid, None)
                if ev is None:
                    ev = Event(pid, r.group(1), r.group(1) + "(")
                ev.text += r.group(2)
                last = ev
                continue
            c = CALL.match(rest)
            if not c:
                last = None
                continue
            ev = Event(pid, c.group(1), rest)
            events.append(ev)
            if rest.endswith("<unfinished ...>"):
                ev.text = rest[: -len("<unfinished ...>")]
                pending[pid] = ev
            last = ev
    return events


def socket_events(events):
    """Events that touch the TCP socket(s) connected to IP:PORT, before and after."""
    inodes = set()
    targets = ("->%s:%d" % (IP, PORT), "->[::ffff:%s]:%d" % (IP, PORT))
    conn_re = re.compile(
        r'sin_port=htons\(%d\), sin_addr=inet_addr\("%s"\)|'
        r'sin6_port=htons\(%d\),.*inet_pton\(AF_INET6, "::ffff:%s"'
        % (PORT, re.escape(IP), PORT, re.escape(IP)))
    # pass 1: which sockets (by inode) were connected to the target
    for ev in events:
        if ev.name == "connect" and conn_re.search(ev.text):
            m = FDDECOR.search(ev.text)
            if m:
                inodes.add(m.group(2))
    picked = []
    for ev in events:
        for m in FDDECOR.finditer(ev.text):
            dec = m.group(2)
            if dec in inodes or dec.endswith(targets):
                picked.append(ev)
                break
    return picked


def describe(ev):
    """A short 'name(flags)' for the table."""
    args = split_args(ev.text[len(ev.name) + 1:])
    name = ev.name
    extra = ""
    if name in ("sendto", "recvfrom", "sendmsg", "recvmsg"):
        idx = 3 if name in ("sendto", "recvfrom") else 2
        if len(args) > idx and args[idx] != "0":
            extra = args[idx]
    elif name == "fcntl" and len(args) > 1:
        extra = " ".join(args[1:]).replace("O_RDWR|", "").replace("O_RDWR", "")
    elif name in ("setsockopt", "getsockopt") and len(args) > 2:
        extra = args[2]
    elif name == "ioctl" and len(args) > 1:
        extra = args[1]
    elif name == "shutdown" and len(args) > 1:
        extra = args[1]
    elif name == "epoll_ctl" and len(args) > 1:
        extra = args[1].replace("EPOLL_CTL_", "")
        if len(args) > 3:
            evm = re.search(r"events=([A-Z|]+)", args[3])
            if evm:
                extra += " " + evm.group(1)
    elif name == "socket":
        extra = ",".join(args[:2])
        if re.search(r"= \d+<TCPv6", ev.text):
            extra = extra.replace("AF_INET,", "AF_INET6,")
    elif name == "connect" and len(args) > 1:
        v6 = re.search(r'inet_pton\(AF_INET6, "([^"]+)"', args[1])
        if v6:
            extra = "AF_INET6 " + v6.group(1)
        m = re.search(r"= (-1 \w+)", ev.text)
        if m:
            extra = (extra + " " + m.group(1)).strip()
    elif name in ("read", "recvfrom") and re.search(r"= -1 EAGAIN", ev.text):
        extra = "EAGAIN"
    elif name in ("poll", "ppoll"):
        evm = re.findall(r"events=([A-Z|]+)", ev.text)
        extra = ",".join(sorted(set(evm)))
    return name, extra.strip()


def summarize(events):
    """(entry point -> syscall(flags) counts) for the socket, plus process notes."""
    rows = collections.OrderedDict()
    for ev in socket_events(events):
        name, extra = describe(ev)
        sc = name + ("[" + extra + "]" if extra else "")
        key = (ev.entry(), sc)
        rows[key] = rows.get(key, 0) + 1
    notes = []
    names = collections.Counter(ev.name for ev in events)
    for n in ("epoll_wait", "epoll_pwait", "epoll_pwait2", "close_range", "sendfile",
              "splice", "io_uring_setup", "io_uring_enter", "select", "pselect6"):
        if names.get(n):
            notes.append("%s x%d (process-wide)" % (n, names[n]))
    raw_close = [ev for ev in events if ev.name == "close" and ev.entry() == "syscall"]
    if raw_close:
        notes.append("close via syscall(SYS_close) x%d" % len(raw_close))
    return rows, notes


# ---- imports of the code that makes the calls --------------------------------------

INTERESTING_SYMS = re.compile(
    r"^(socket|connect|close|close_range|dup[23]?|fcntl(64)?|read|write|readv|writev|"
    r"recv|recvfrom|recvmsg|recvmmsg|send|sendto|sendmsg|sendmmsg|sendfile(64)?|splice|"
    r"shutdown|getsockopt|setsockopt|ioctl|poll|ppoll|select|epoll_\w+|getpeername|"
    r"getsockname|getaddrinfo|gethostbyname\w*|__\w+_chk|syscall|accept4?|pread(64)?|"
    r"pwrite(64)?)$")


def imports(path):
    try:
        out = subprocess.run(["nm", "-D", "--undefined-only", path], capture_output=True,
                             text=True, check=False).stdout
    except OSError:
        return []
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if not parts:
            continue
        sym = parts[-1].split("@")[0]
        if INTERESTING_SYMS.match(sym) and (not sym.startswith("__") or "_chk" in sym):
            syms.add(sym)
    return sorted(syms)


def lib_paths(events):
    """Shared objects that appear in the stacks of socket calls (outermost non-libc)."""
    objs = collections.OrderedDict()
    for ev in socket_events(events):
        for obj, _ in ev.frames:
            if not LIBC.search(obj):
                objs[obj] = True
                break
    return list(objs)


# ---- namespace and run --------------------------------------------------------------

def sh(*cmd, check=True, **kw):
    return subprocess.run(list(cmd), check=check, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "target", "strace-audit"))
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("strace_audit: needs root (ip netns)")
    os.makedirs(a.out, exist_ok=True)
    javadir = os.path.join(a.out, "java")
    os.makedirs(javadir, exist_ok=True)
    sh("javac", "-d", javadir, os.path.join(HERE, "JHttpClient.java"),
       os.path.join(HERE, "JUrlConnection.java"))

    ns = "lunar-audit-%d" % os.getpid()
    etc = "/etc/netns/" + ns
    origin = None
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", IP + "/32", "dev", "lo")
        os.makedirs(etc, exist_ok=True)
        with open(etc + "/hosts", "w") as f:
            f.write("127.0.0.1 localhost\n%s %s\n" % (IP, NAME))
        ready = os.path.join(a.out, "origin.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        origin = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", ORIGIN,
                                   "--bind", "%s:%d" % (IP, PORT), "--ready", ready],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        else:
            sys.exit("strace_audit: origin did not start")

        only = set(x.strip() for x in a.only.split(",") if x.strip())
        results = []
        for label, cmd in clients(javadir):
            if only and label.split()[0] not in only and label not in only:
                continue
            trace = os.path.join(a.out, re.sub(r"[^a-z0-9]+", "_", label.lower()) + ".trace")
            p = sh("ip", "netns", "exec", ns, "strace", "-f", "-k", "-yy", "-s", "64",
                   "-o", trace, "-e", "trace=" + TRACE_SET, *cmd, check=False,
                   capture_output=True, text=True, timeout=180)
            status = (p.stdout.strip().splitlines() or [""])[-1] or "ok"
            status += " (rc=%d)" % p.returncode if p.returncode else ""
            events = parse_trace(trace)
            rows, notes = summarize(events)
            results.append((label, status, rows, notes, lib_paths(events)))
    finally:
        if origin is not None:
            origin.send_signal(signal.SIGTERM)
            try:
                origin.wait(timeout=5)
            except subprocess.TimeoutExpired:
                origin.kill()
                origin.wait()
        sh("ip", "netns", "del", ns, check=False, stderr=subprocess.DEVNULL)
        shutil.rmtree(etc, ignore_errors=True)

    # ---- report ----
    print("| client | result | libc entry point -> syscall[flags] (count) on the TCP socket | other |")
    print("|---|---|---|---|")
    for label, status, rows, notes, _ in results:
        cell = "<br>".join("`%s` -> %s%s" % (e, sc, " x%d" % n if n > 1 else "")
                           for (e, sc), n in rows.items())
        print("| %s | %s | %s | %s |" % (label, status, cell, "<br>".join(notes)))
    print()
    print("Imports (nm -D --undefined-only) of the objects that make the socket calls:")
    print()
    for label, _, _, _, objs in results:
        for obj in objs:
            print("- %s: `%s`: %s" % (label, obj, " ".join(imports(obj))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
