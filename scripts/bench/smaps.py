"""make bench: a shared object's own resident memory in a process, from /proc/PID/smaps.

lib_mappings(pid, path) -> (Rss KiB, Private_Dirty KiB) summed over the mappings of the
file `path` and, when the object has a .bss beyond its file's last page, the anonymous
mapping that directly follows its last one (liblunar_intercept has none: build.rs keeps
its .bss in the file; an anonymous mapping that follows is then another's, e.g. the main
thread's TLS block, which the kernel may merge with a .bss mapping it follows).
"""
import os
import struct


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


def has_zero_fill_mapping(path):
    """Whether the dynamic linker maps a .bss of `path` beyond its file's pages: the last
    PT_LOAD's memory size reaches a page past its file size (ELF64, little-endian)."""
    with open(path, "rb") as f:
        header = f.read(64)
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    page = 4096
    zero_fill = False
    for i in range(phnum):
        kind, _, _, vaddr, _, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
        if kind == 1:  # PT_LOAD
            file_end = -(-(vaddr + filesz) // page) * page
            zero_fill = vaddr + memsz > file_end
    return zero_fill


def lib_mappings(pid, path):
    real = os.path.realpath(path)
    with_bss = has_zero_fill_mapping(real)
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
        if name == real or (with_bss and name == "" and start == last_end):
            rss += r
            dirty += d
            last_end = end if name == real else None
        else:
            last_end = None
    return rss, dirty
