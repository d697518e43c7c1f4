"""make bench: process start-up, /bin/true with no preload, with an empty shared object
preloaded, and with the library preloaded (inert: no LUNAR_* set; and with
LUNAR_PROXY_HOST set, which the library does not read at load either).

    startup.py LIB EMPTY_SO RUNS ROUNDS SAMPLES [FLOOR_SO]

Time: hyperfine -N, RUNS/ROUNDS runs of each variant per round, the variants' order
rotating from round to round. Page faults per start: `perf stat -e page-faults` (minor
and major faults of the started process from its exec on), RUNS/ROUNDS starts per
variant per round; where perf cannot count, wait4's ru_minflt + ru_majflt of the child.
FLOOR_SO (c-tests/bench/floor_preload.c: an fd table and hooks forwarding to libc, the
least a hooking preload carries) is a fifth variant: the floor beside the library.
Every variant runs `/usr/bin/env -i [LD_PRELOAD=...] /bin/true`: an empty environment,
so the env exec is in every baseline too. Appends start.VARIANT.{us,us_median,faults}
samples (µs and faults per start) to SAMPLES.
"""
import json
import os
import subprocess
import sys
import tempfile

lib, empty, runs, rounds, samples = sys.argv[1:6]
floor = sys.argv[6] if len(sys.argv) > 6 else None
runs, rounds = int(runs), int(rounds)
per = max(1, runs // rounds)
VARIANTS = [
    ("none", ["/usr/bin/env", "-i", "/bin/true"]),
    ("empty", ["/usr/bin/env", "-i", "LD_PRELOAD=" + empty, "/bin/true"]),
    ("lib", ["/usr/bin/env", "-i", "LD_PRELOAD=" + lib, "/bin/true"]),
    ("lib_env", ["/usr/bin/env", "-i", "LD_PRELOAD=" + lib,
                 "LUNAR_PROXY_HOST=proxy.lunar.test:8000", "/bin/true"]),
]
if floor:
    VARIANTS.append(("floor", ["/usr/bin/env", "-i", "LD_PRELOAD=" + floor, "/bin/true"]))
out = open(samples, "a")


def sample(key, rnd, value):
    out.write("%s\t%d\t%s\n" % (key, rnd, value))
    out.flush()


def perf_faults(argv, n):
    r = subprocess.run(["perf", "stat", "-x,", "-e", "page-faults", "-r", str(n), "--"] + argv,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in r.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[2].startswith("page-faults"):
            try:
                return float(f[0])
            except ValueError:
                return None
    return None


def rusage_faults(argv, n):
    total = 0
    for _ in range(n):
        pid = os.posix_spawn(argv[0], argv, {})
        _, status, ru = os.wait4(pid, 0)
        if status != 0:
            sys.exit("startup.py: %s failed" % argv)
        total += ru.ru_minflt + ru.ru_majflt
    return total / n


use_perf = perf_faults(VARIANTS[0][1], 2) is not None
print("  page faults counted with %s" % ("perf stat" if use_perf else "wait4 rusage (perf unavailable)"),
      file=sys.stderr)
sample("start.faults_tool.%s" % ("perf" if use_perf else "rusage"), 0, 1)

with tempfile.TemporaryDirectory() as tmp:
    for rnd in range(1, rounds + 1):
        k = (rnd - 1) % len(VARIANTS)
        order = VARIANTS[k:] + VARIANTS[:k]
        js = os.path.join(tmp, "hf%d.json" % rnd)
        r = subprocess.run(["hyperfine", "-N", "--style", "none", "--warmup", "20", "--runs", str(per),
                            "--export-json", js] + [" ".join(argv) for _, argv in order],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit("startup.py: hyperfine failed:\n" + r.stderr)
        for (name, _), res in zip(order, json.load(open(js))["results"]):
            sample("start.%s.us" % name, rnd, "%.3f" % (res["mean"] * 1e6))
            sample("start.%s.us_median" % name, rnd, "%.3f" % (res["median"] * 1e6))
        line = []
        for name, argv in order:
            f = perf_faults(argv, per) if use_perf else rusage_faults(argv, per)
            if f is None:
                sys.exit("startup.py: perf stat stopped counting")
            sample("start.%s.faults" % name, rnd, "%.3f" % f)
            line.append("%s %.1f" % (name, f))
        print("  start-up round %d/%d: page faults %s" % (rnd, rounds, ", ".join(line)), file=sys.stderr)
