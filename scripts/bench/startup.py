"""make bench: process start-up, /bin/true with no preload, with an empty shared object
preloaded, and with the library preloaded (inert: no LUNAR_* set; and with
LUNAR_PROXY_HOST set, which the library does not read at load either).

    startup.py LIB EMPTY_SO RUNS ROUNDS SAMPLES [FLOOR_SO]

Each start is a posix_spawn of /bin/true (its environment LD_PRELOAD alone, with
LUNAR_PROXY_HOST for lib_env) and a wait4, timed with the monotonic clock. The variants
take turns start by start, their order rotating, so that this VM's drift (other tenants,
the clock frequency) falls on all of them alike; a start of one variant after a block of
another's, as hyperfine runs them, measures the drift as much as the library. wait4's
rusage gives each start's page faults (minor + major) and CPU time (user + system).
FLOOR_SO (c-tests/bench/floor_preload.c: an fd table and hooks forwarding to libc, the
least a hooking preload carries) is a fifth variant: the floor beside the library.
RUNS starts per variant in ROUNDS rounds; appends, per round,
start.VARIANT.{us,us_median,cpu_us,faults} (means, and the median µs) to SAMPLES.
"""
import os
import statistics
import sys
import time

lib, empty, runs, rounds, samples = sys.argv[1:6]
floor = sys.argv[6] if len(sys.argv) > 6 else None
runs, rounds = int(runs), int(rounds)
per = max(1, runs // rounds)
VARIANTS = [
    ("none", {}),
    ("empty", {"LD_PRELOAD": empty}),
    ("lib", {"LD_PRELOAD": lib}),
    ("lib_env", {"LD_PRELOAD": lib, "LUNAR_PROXY_HOST": "proxy.lunar.test:8000"}),
]
if floor:
    VARIANTS.append(("floor", {"LD_PRELOAD": floor}))
TRUE = "/bin/true"
out = open(samples, "a")


def sample(key, rnd, value):
    out.write("%s\t%d\t%s\n" % (key, rnd, value))
    out.flush()


def start(env):
    """One start: (µs from spawn to reaped, CPU µs, page faults)."""
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(TRUE, [TRUE], env)
    _, status, ru = os.wait4(pid, 0)
    elapsed = (time.perf_counter_ns() - t0) / 1000
    if status != 0:
        sys.exit("startup.py: %s with %s failed" % (TRUE, env))
    return elapsed, (ru.ru_utime + ru.ru_stime) * 1e6, ru.ru_minflt + ru.ru_majflt


for _ in range(20):  # warm the page cache and the loader's files
    for _, env in VARIANTS:
        start(env)
for rnd in range(1, rounds + 1):
    seen = {name: [] for name, _ in VARIANTS}
    for i in range(per):
        k = i % len(VARIANTS)
        for name, env in VARIANTS[k:] + VARIANTS[:k]:
            seen[name].append(start(env))
    line = []
    for name, _ in VARIANTS:
        us, cpu, faults = zip(*seen[name])
        sample("start.%s.us" % name, rnd, "%.3f" % statistics.mean(us))
        sample("start.%s.us_median" % name, rnd, "%.3f" % statistics.median(us))
        sample("start.%s.cpu_us" % name, rnd, "%.3f" % statistics.mean(cpu))
        sample("start.%s.faults" % name, rnd, "%.3f" % statistics.mean(faults))
        line.append("%s %.0f us %.2f faults" % (name, statistics.median(us), statistics.mean(faults)))
    print("  start-up round %d/%d: %s" % (rnd, rounds, ", ".join(line)), file=sys.stderr)
