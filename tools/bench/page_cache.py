#!/usr/bin/env python3
"""Drop model files from the page cache, so the next program that reads them starts cold.

    page_cache.py evict PATH [PATH ...]    files, or folders (their *.safetensors and *.gguf)
    page_cache.py status PATH [PATH ...]   how much of each is cached (mincore), in MB

Why: decode streams the weights from a memory mapping, and how fast depends on the page size
the page cache holds them in. A file read from disk comes in as 2 MiB folios (Linux 6.x with
large-folio filesystems; moe's mappings ask for them with MADV_HUGEPAGE), mapped one TLB entry
per 2 MiB; a file still cached from being written (a model just made or copied) stays in 4 KiB
pages, and a decode step then pays a page walk every 4 KiB (Qwen2-0.5B, Zen 5, 1 thread: 42 ms
per step instead of 35). The benchmark scripts evict each tool's weight files before that tool
runs, so moe, llama.cpp and PyTorch all start from the same state: the files as after a reboot.

posix_fadvise(POSIX_FADV_DONTNEED) drops clean, unmapped pages only; nothing is written.
"""
import mmap
import os
import sys

SUFFIXES = (".safetensors", ".gguf")


def files_of(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for n in sorted(names):
                    if n.endswith(SUFFIXES):
                        yield os.path.join(root, n)
        elif os.path.isfile(p):
            yield p
        else:
            sys.exit(f"page_cache.py: no such file or folder: {p}")


def cached_bytes(path):
    """Bytes of `path` in the page cache (mincore over a read-only mapping)."""
    import ctypes
    size = os.path.getsize(path)
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    page = mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            vec = ctypes.create_string_buffer((size + page - 1) // page)
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return sum(b & 1 for b in vec.raw) * page
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def main(argv):
    if len(argv) < 3 or argv[1] not in ("evict", "status"):
        sys.exit(__doc__)
    for f in files_of(argv[2:]):
        if argv[1] == "evict":
            before = cached_bytes(f)
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            print(f"{f}: {before / 1e6:.0f} -> {cached_bytes(f) / 1e6:.0f} MB cached", file=sys.stderr)
        else:
            print(f"{f}: {cached_bytes(f) / 1e6:.0f} of {os.path.getsize(f) / 1e6:.0f} MB cached")


if __name__ == "__main__":
    main(sys.argv)
