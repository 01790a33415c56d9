#!/usr/bin/python3
"""Writes the seed corpus of tests/fuzz/fuzz_safetensors.cpp: tests/fuzz/corpus/safetensors/.

Python standard library only; run from anywhere with /usr/bin/python3 (the files are
deterministic, so rerunning it changes nothing unless this script changed):

    /usr/bin/python3 tests/fuzz/make_safetensors_seeds.py

valid-*: files the reader must accept (layout as the Rust/Python reference writes it: compact
JSON header, "__metadata__" first, padded with spaces to 8 bytes, data by descending dtype
then name), covering every dtype string, 0-d / empty / multi-dim / high-rank tensors,
metadata, no tensors at all, and a misaligned tensor (unpadded header: get() copies it).
near-*: one violation each (truncated data, header length past the end, overlap, gap, unknown
dtype, trailing bytes, duplicate names, size mismatch, deep JSON, a BOOL byte of 2, an empty
tensor whose other dimensions overflow 63 bits): the keywords and structures the fuzzer mutates.
Every file is under 4 KB (the smoke run's -max_len is 4096).
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seedlib import write_seeds  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")

# dtype -> (struct format of one element, size in bytes, reference order: larger rank first)
DTYPES = {
    "BOOL": ("?", 1, 0), "U8": ("B", 1, 1), "I8": ("b", 1, 2), "F8_E4M3": ("B", 1, 2),
    "F8_E5M2": ("B", 1, 2), "I16": ("<h", 2, 3), "U16": ("<H", 2, 4), "F16": ("<e", 2, 5),
    "BF16": ("<H", 2, 6), "I32": ("<i", 4, 7), "U32": ("<I", 4, 8), "F32": ("<f", 4, 9),
    "F64": ("<d", 8, 10), "I64": ("<q", 8, 11), "U64": ("<Q", 8, 12),
}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def values(dtype, shape, seed):
    """Deterministic element bytes of a tensor."""
    fmt, size, _ = DTYPES[dtype]
    out = bytearray()
    for i in range(numel(shape)):
        k = (seed * 31 + i * 7) % 97
        if dtype == "BOOL":
            v = k % 2 == 1
        elif dtype in ("F16", "F32", "F64"):
            v = (k - 48) * 0.25
        elif dtype == "BF16":
            v = struct.unpack("<I", struct.pack("<f", (k - 48) * 0.5))[0] >> 16
        elif dtype.startswith("I"):
            v = k - 48
        else:
            v = k
        out += struct.pack(fmt, v)
    return bytes(out)


def header_bytes(obj, pad=True):
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return text


def file_image(header, data=b"", length=None):
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def build(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape)] -> a valid file laid out as the reference does."""
    order = sorted(tensors, key=lambda t: (-DTYPES[t[1]][2], t[0]))
    entries, data = {}, b""
    for seed, (name, dtype, shape) in enumerate(order):
        blob = values(dtype, shape, seed)
        entries[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    obj = {}
    if metadata is not None:
        obj["__metadata__"] = metadata
    for name in sorted(entries):
        obj[name] = entries[name]
    return file_image(header_bytes(obj, pad), data)


def raw(header_obj, data=b"", pad=True, length=None):
    """A file from a header object written as given (for the near-valid ones)."""
    return file_image(header_bytes(header_obj, pad), data, length)


def seeds():
    s = {}
    s["valid-empty.safetensors"] = build([])
    s["valid-metadata-only.safetensors"] = build([], {"format": "pt", "note": "caf\u00e9 \U0001F600"})
    s["valid-f32-matrix.safetensors"] = build([("weight", "F32", (2, 3))], {"format": "pt"})
    s["valid-every-dtype.safetensors"] = build(
        [("f64", "F64", ()), ("f32", "F32", (3,)), ("f16", "F16", (2, 2)), ("bf16", "BF16", (4,)),
         ("i64", "I64", (1, 2)), ("i32", "I32", (3,)), ("i16", "I16", (2,)), ("i8", "I8", (5,)),
         ("u8", "U8", (2, 2, 2)), ("bool", "BOOL", (3,)), ("u16", "U16", (2,)), ("u32", "U32", (1,)),
         ("u64", "U64", (2,))])
    s["valid-empty-and-0d.safetensors"] = build(
        [("scalar", "F32", ()), ("none", "F32", (0,)), ("hollow", "U8", (2, 0, 3)), ("i16", "I16", (2,))])
    s["valid-moe-names.safetensors"] = build(
        [("model.layers.0.block_sparse_moe.gate.weight", "BF16", (4, 2)),
         ("model.layers.0.block_sparse_moe.experts.0.w1.weight", "BF16", (3, 2)),
         ("model.layers.0.block_sparse_moe.experts.1.w1.weight", "BF16", (3, 2)),
         ("model.norm.weight", "F32", (2,))], {"format": "pt"})
    s["valid-misaligned.safetensors"] = build([("a", "U8", (3,)), ("w", "F32", (2,))], pad=False)
    s["valid-unsupported-and-rank9.safetensors"] = build(
        [("fp8", "F8_E4M3", (4,)), ("fp8b", "F8_E5M2", (2,)), ("r9", "U8", (1,) * 9), ("x", "F16", (1,))])

    ok = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    s["near-truncated-data.safetensors"] = raw(ok, bytes(4))
    s["near-header-length-too-large.safetensors"] = raw(ok, bytes(8), length=4000)
    s["near-overlap.safetensors"] = raw(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12))
    s["near-gap.safetensors"] = raw(
        {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
         "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}}, bytes(6))
    s["near-bad-dtype.safetensors"] = raw({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))
    s["near-trailing-garbage.safetensors"] = raw(ok, bytes(8) + b"garbage!")
    s["near-size-mismatch.safetensors"] = raw({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8))
    s["near-bool-2.safetensors"] = raw({"m": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x02")
    s["near-huge-empty-dims.safetensors"] = raw(
        {"z": {"dtype": "U8", "shape": [2, 4611686018427387904, 0], "data_offsets": [0, 0]}})
    s["near-duplicate-name.safetensors"] = file_image(
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
        bytes(2))
    s["near-deep-metadata.safetensors"] = file_image(b'{"__metadata__":' + b"[" * 100 + b"]" * 100 + b"}")
    return s


def main():
    return write_seeds(OUT, seeds())


if __name__ == "__main__":
    sys.exit(main())
