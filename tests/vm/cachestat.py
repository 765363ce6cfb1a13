#!/usr/bin/env python3
"""cachestat.py FILE OFFSET LENGTH: the page cache state of a byte range of FILE (Linux >= 6.5 cachestat(2)).

Prints one line "cache=<pages> dirty=<pages> writeback=<pages>" (CacheModeHandoverIT: a write the back-end followed
with a FLUSH, fdatasync on the file bdev, leaves no dirty page; a writeback-mode write leaves its pages dirty).
Exit status 2 when the kernel has no cachestat.
"""
import ctypes
import os
import sys

SYS_CACHESTAT = 451  # x86_64


class CachestatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class Cachestat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64)
                for name in ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


def main():
    path, offset, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        rng = CachestatRange(offset, length)
        stat = Cachestat()
        rc = libc.syscall(ctypes.c_long(SYS_CACHESTAT), ctypes.c_int(fd), ctypes.byref(rng), ctypes.byref(stat),
                          ctypes.c_uint(0))
        if rc != 0:
            print("cachestat: " + os.strerror(ctypes.get_errno()), file=sys.stderr)
            sys.exit(2)
        print("cache=%d dirty=%d writeback=%d" % (stat.nr_cache, stat.nr_dirty, stat.nr_writeback))
    finally:
        os.close(fd)


main()
