"""make bench: a shared object's own resident memory in a process, from /proc/PID/smaps.

lib_mappings(pid, path) -> (Rss KiB, Private_Dirty KiB) summed over the mappings of the
file `path` and the anonymous mapping that directly follows its last one (its .bss
beyond the file's last page: for liblunar_intercept the fd table, zero pages until used).
"""
import os


def as_after_boot(*paths):
    """Drops the files' pages from the page cache, so that processes map them as a booted
    machine has them (read from disk, by readahead) and not as the linker's or cp's
    writes left them: the kernel maps a file's cached pages in blocks that follow how
    they entered the cache, so a freshly written library shows up to 44 KiB more of its
    code resident than the same file read back (measured on 6.18)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def lib_mappings(pid, path):
    real = os.path.realpath(path)
    maps = []  # [start, end, name, rss, dirty]
    for line in open("/proc/%s/smaps" % pid):
        f = line.split()
        if not f:
            continue
        if not f[0].endswith(":") and "-" in f[0]:
            start, end = (int(x, 16) for x in f[0].split("-"))
            maps.append([start, end, f[5] if len(f) > 5 else "", 0, 0])
        elif f[0] == "Rss:":
            maps[-1][3] = int(f[1])
        elif f[0] == "Private_Dirty:":
            maps[-1][4] = int(f[1])
    rss = dirty = 0
    last_end = None
    for start, end, name, r, d in maps:
        if name == real or (name == "" and start == last_end):
            rss += r
            dirty += d
            last_end = end if name == real else None
        else:
            last_end = None
    return rss, dirty
