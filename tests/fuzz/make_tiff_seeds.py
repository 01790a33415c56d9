#!/usr/bin/python3
"""Writes the extra seeds of tests/fuzz/fuzz_tiff.cpp: tests/fuzz/corpus/tiff/seed12-*.tif ...

Python standard library only (zlib, lzma); deterministic; run with /usr/bin/python3:

    /usr/bin/python3 tests/fuzz/make_tiff_seeds.py

seed0..seed11 (written with libtiff) cover strips and 16 x 16 tiles, both planar
configurations, none / Deflate / LZW, predictors 2 and 3, uint8 / uint16 / int16 / float32,
nodata and georeferencing, all little-endian classic TIFF. These add what they lack: a
big-endian file, tiles holding several bands (contiguous) and band-separate tiles, PackBits,
LZMA, BigTIFF (64-bit offsets) and a file with two directories. Samples follow the unit tests'
value_at() (tests/unit/rs_tiff_writer.hpp); each file is a few hundred bytes.
regression-*.tif are inputs that once misbehaved (copied in by hand, not written here).
"""
import lzma
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seedlib import write_seeds  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "tiff")

SHORT, LONG, ASCII, DOUBLE, LONG8 = 3, 4, 2, 12, 16
TYPE_SIZE = {SHORT: 2, LONG: 4, ASCII: 1, DOUBLE: 8, LONG8: 8}
TYPE_FMT = {SHORT: "H", LONG: "I", ASCII: "B", DOUBLE: "d", LONG8: "Q"}
NONE, LZW, DEFLATE, PACKBITS, LZMA = 1, 5, 8, 32773, 34925


def value_at(kind, b, y, x):
    v = (b * 7919 + y * 131 + x * 17) % 251
    return {"u8": v, "u16": v * 211 + b, "i16": (v - 125) * 203 - b}[kind]


KIND = {"u8": ("B", 8, 1), "u16": ("H", 16, 1), "i16": ("h", 16, 2)}  # struct code, bits, SampleFormat


def packbits(data, row_bytes):
    """PackBits, each row packed on its own (TIFF 6.0, section 9)."""
    out = bytearray()
    for r in range(0, len(data), row_bytes):
        row, i = data[r:r + row_bytes], 0
        while i < len(row):
            j = i
            while j + 1 < len(row) and row[j + 1] == row[i] and j - i < 127:
                j += 1
            if j > i:  # a run of j - i + 1 equal bytes
                out += bytes([257 - (j - i + 1), row[i]])
                i = j + 1
                continue
            j = i + 1  # literals up to the next run of 2 or more
            while j < len(row) and j - i < 128 and not (j + 1 < len(row) and row[j] == row[j + 1]):
                j += 1
            out += bytes([j - i - 1]) + row[i:j]
            i = j
    return bytes(out)


def block(kind, endian, spp_in_block, band0, x0, y0, w, h, W, H, predictor):
    """The samples of one strip/tile (w x h, zero outside the W x H image), predictor applied."""
    code, _, _ = KIND[kind]
    mask = (1 << (struct.calcsize(code) * 8)) - 1
    rows = []
    for r in range(h):
        row = []
        for c in range(w):
            for s in range(spp_in_block):
                y, x = y0 + r, x0 + c
                row.append(value_at(kind, band0 + s, y, x) if y < H and x < W else 0)
        if predictor == 2:  # horizontal differencing per sample, modulo the sample size
            row = row[:spp_in_block] + [(row[i] - row[i - spp_in_block]) & mask for i in range(spp_in_block, len(row))]
            if code == "h":
                row = [v - (mask + 1) if v > mask // 2 else v for v in row]
        rows.append(row)
    flat = [v for row in rows for v in row]
    return struct.pack(endian + code * len(flat), *flat)


def compress(data, compression, row_bytes):
    if compression == NONE:
        return data
    if compression == DEFLATE:
        return zlib.compress(data, 9)
    if compression == PACKBITS:
        return packbits(data, row_bytes)
    if compression == LZMA:
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    raise ValueError(compression)


def image(kind, W, H, bands, endian, separate=False, tile=0, rows_per_strip=0, compression=NONE, predictor=1,
          nodata=None, geo=False):
    """One directory: its tags {tag: (type, values)} and its encoded blocks."""
    code, bits, fmt = KIND[kind]
    planes, spp_in_block = (bands, 1) if separate else (1, bands)
    bw, bh = (tile, tile) if tile else (W, rows_per_strip or H)
    blocks = []
    for p in range(planes):
        for y0 in range(0, H, bh):
            for x0 in range(0, W, bw):
                h = bh if tile else min(bh, H - y0)
                raw = block(kind, endian, spp_in_block, p if separate else 0, x0, y0, bw, h, W, H, predictor)
                blocks.append(compress(raw, compression, bw * spp_in_block * bits // 8))
    tags = {
        256: (LONG, [W]), 257: (LONG, [H]), 258: (SHORT, [bits] * bands), 259: (SHORT, [compression]),
        262: (SHORT, [1]), 277: (SHORT, [bands]), 284: (SHORT, [2 if separate else 1]),
        339: (SHORT, [fmt] * bands),
    }
    if bands > 1:
        tags[338] = (SHORT, [0] * (bands - 1))  # ExtraSamples: unspecified
    if predictor != 1:
        tags[317] = (SHORT, [predictor])
    if tile:
        tags[322], tags[323] = (LONG, [tile]), (LONG, [tile])
    else:
        tags[278] = (LONG, [bh])
    if nodata is not None:
        tags[42113] = (ASCII, list(nodata.encode()) + [0])
    if geo:
        tags[33550] = (DOUBLE, [10.0, 10.0, 0.0])
        tags[33922] = (DOUBLE, [0.0, 0.0, 0.0, 399960.0, 5800020.0, 0.0])
        tags[34735] = (SHORT, [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633])
    return tags, blocks, (324, 325) if tile else (273, 279)


def tiff(directories, endian="<", bigtiff=False):
    """Serialises directories: each one's blocks, then its out-of-line values, then its IFD."""
    out = bytearray(b"II" if endian == "<" else b"MM")
    out += struct.pack(endian + "HHHQ", 43, 8, 0, 0) if bigtiff else struct.pack(endian + "HI", 42, 0)
    first_ifd_at = 8 if bigtiff else 4
    inline, count_fmt, entry_fmt, next_fmt = (8, "Q", "HHQ", "Q") if bigtiff else (4, "I", "HHI", "I")
    prev_next = first_ifd_at
    for tags, blocks, (off_tag, count_tag) in directories:
        offsets = []
        for b in blocks:
            offsets.append(len(out))
            out += b
            if len(out) % 2:
                out += b"\0"
        tags = dict(tags)
        wide = bigtiff and max(offsets) > 0xFFFFFFFF
        tags[off_tag] = (LONG8 if wide else LONG, offsets)
        tags[count_tag] = (LONG, [len(b) for b in blocks])
        values = {}
        for tag in sorted(tags):
            typ, vals = tags[tag]
            data = struct.pack(endian + TYPE_FMT[typ] * len(vals), *vals)
            if len(data) > inline:
                values[tag] = len(out)
                out += data + (b"\0" if len(data) % 2 else b"")
            else:
                values[tag] = data.ljust(inline, b"\0")
        ifd_at = len(out)
        struct.pack_into(endian + next_fmt, out, prev_next, ifd_at)
        out += struct.pack(endian + ("Q" if bigtiff else "H"), len(tags))
        for tag in sorted(tags):
            typ, vals = tags[tag]
            out += struct.pack(endian + entry_fmt, tag, typ, len(vals))
            v = values[tag]
            out += v if isinstance(v, bytes) else struct.pack(endian + count_fmt, v)
        prev_next = len(out)
        out += struct.pack(endian + next_fmt, 0)
    return bytes(out)


def seeds():
    s = {}
    s["seed12-bigendian-separate-tiles-deflate.tif"] = tiff(
        [image("u16", 20, 18, 3, ">", separate=True, tile=16, compression=DEFLATE, predictor=2)], ">")
    s["seed13-contig-tiles-packbits-geo.tif"] = tiff(
        [image("u8", 20, 18, 3, "<", tile=16, compression=PACKBITS, nodata="0", geo=True)])
    s["seed14-bigtiff-strips.tif"] = tiff([image("i16", 17, 5, 1, "<", rows_per_strip=2)], "<", bigtiff=True)
    s["seed15-lzma-contig-strips.tif"] = tiff(
        [image("u16", 17, 5, 2, "<", rows_per_strip=3, compression=LZMA, predictor=2)])
    s["seed16-two-directories.tif"] = tiff(
        [image("u8", 9, 4, 1, "<", rows_per_strip=4, compression=DEFLATE),
         image("i16", 5, 3, 2, "<", separate=True, rows_per_strip=2)])
    s["seed17-bigendian-contig-strips-i16.tif"] = tiff(
        [image("i16", 17, 5, 2, ">", rows_per_strip=2, compression=PACKBITS, nodata="-32768")], ">")
    return s


def main():
    return write_seeds(OUT, seeds())


if __name__ == "__main__":
    sys.exit(main())
