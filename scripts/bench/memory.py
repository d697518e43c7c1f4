"""make bench: the library's own resident memory in an inert process.

    memory.py LIB EMPTY_SO ROUNDS SAMPLES

/bin/sleep with the library preloaded (no LUNAR_* set: inert) and, as the baseline, with
an empty shared object preloaded; once it sleeps, the preloaded object's smaps Rss and
Private_Dirty (its file mappings, and a .bss mapping that follows them: see smaps.py) are
read and the process stopped. Both files' pages are first dropped from the page cache
(smaps.as_after_boot). Appends mem.{lib,empty}.{rss,dirty} (KiB) to SAMPLES.
"""
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
from smaps import as_after_boot, lib_mappings  # noqa: E402

lib, empty, rounds, samples = sys.argv[1:]
as_after_boot(lib, empty)
out = open(samples, "a")


def measure(so):
    p = subprocess.Popen(["/bin/sleep", "30"], env={"LD_PRELOAD": so})
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # asleep: clock_nanosleep (230) or nanosleep (35)
            try:
                if open("/proc/%d/syscall" % p.pid).read().split()[0] in ("230", "35"):
                    break
            except (OSError, IndexError):
                pass
            time.sleep(0.01)
        else:
            sys.exit("memory.py: /bin/sleep under %s never went to sleep" % so)
        return lib_mappings(p.pid, so)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait()


for rnd in range(1, int(rounds) + 1):
    arms = [("lib", lib), ("empty", empty)]
    if rnd % 2 == 0:
        arms.reverse()
    for name, so in arms:
        rss, dirty = measure(so)
        out.write("mem.%s.rss\t%d\t%d\nmem.%s.dirty\t%d\t%d\n" % (name, rnd, rss, name, rnd, dirty))
out.close()
