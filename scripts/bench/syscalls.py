"""make bench: system calls per request, curl keep-alive, library vs direct mode.

    syscalls.py LIB REQS ROUNDS SAMPLES   (inside the bench's lab namespace)

`strace -f -c` of one curl process fetching 1 URL and of one fetching REQS+1 URLs on one
connection, through the library (LD_PRELOAD, LUNAR_PROXY_HOST=proxy.lunar.test:8000,
http://api.example.test/) and in direct mode (http://proxy.lunar.test:8000/ with the
x-lunar-* headers). Per request: (calls(REQS+1) - calls(1)) / REQS, so the process's
start, the library's set-up and its handshake are left out; the one-URL process is
reported too. Rounds alternate the order. Appends sys.{lib,direct}.{per_req,one}
samples, and sys.{lib,direct}.call.NAME (per request, first round) to SAMPLES.
"""
import os
import subprocess
import sys
import tempfile

lib, reqs, rounds, samples = sys.argv[1:]
reqs, rounds = int(reqs), int(rounds)
HDRS = ["-H", "x-lunar-host: api.example.test", "-H", "x-lunar-scheme: http",
        "-H", "x-lunar-interceptor: lunar-direct/0",
        "-H", "x-lunar-req-id: 00000000-0000-4000-8000-000000000000"]
ARMS = {
    "lib": (["-E", "LD_PRELOAD=" + lib, "-E", "LUNAR_PROXY_HOST=proxy.lunar.test:8000"], [],
            "http://api.example.test/"),
    "direct": ([], HDRS, "http://proxy.lunar.test:8000/"),
}
out = open(samples, "a")


def count(arm, n, tmp):
    senv, hdrs, url = ARMS[arm]
    f = os.path.join(tmp, "strace.txt")
    argv = (["strace", "-f", "-c", "-o", f] + senv +
            ["/usr/bin/curl", "-s", "-w", "%{http_code}\\n"] + hdrs + [url] * n)
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env={"PATH": "/usr/bin:/bin"})
    codes = [l for l in r.stdout.splitlines() if l in ("200",) or (len(l) == 3 and l.isdigit())]
    if r.returncode != 0 or codes != ["200"] * n:
        sys.exit("syscalls.py: curl (%s, %d URLs) failed: rc %d %r %s" % (arm, n, r.returncode, codes[:3], r.stderr))
    calls, total = {}, None
    for line in open(f):
        x = line.split()
        if len(x) >= 5 and x[-1] == "total":
            total = int(x[3])
        elif len(x) >= 5 and x[0][0].isdigit() and x[3].isdigit():
            calls[x[-1]] = int(x[3])
    return total, calls


with tempfile.TemporaryDirectory() as tmp:
    for rnd in range(1, rounds + 1):
        arms = ["lib", "direct"] if rnd % 2 else ["direct", "lib"]
        for arm in arms:
            one, c1 = count(arm, 1, tmp)
            many, cn = count(arm, reqs + 1, tmp)
            out.write("sys.%s.per_req\t%d\t%.3f\n" % (arm, rnd, (many - one) / reqs))
            out.write("sys.%s.one\t%d\t%d\n" % (arm, rnd, one))
            if rnd == 1:
                for name in set(c1) | set(cn):
                    out.write("sys.%s.call.%s\t%d\t%.3f\n"
                              % (arm, name, rnd, (cn.get(name, 0) - c1.get(name, 0)) / reqs))
        out.flush()
