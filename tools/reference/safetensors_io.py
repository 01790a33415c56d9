"""A small, dependency-free safetensors reader/writer (numpy + torch only).

The `safetensors` package is not available here, so this module writes the format directly:

    [8 bytes: N, little-endian u64][N bytes: JSON header, padded with spaces to a multiple of 8]
    [data section: raw little-endian tensor bytes]

The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
relative to the data section) plus an optional "__metadata__" object of string -> string.
As the reference implementation does, tensors are laid out by descending element size (then by
name), so that every tensor is aligned to its element size when the file is mapped: the data
section starts at 8 + N, a multiple of 8.

Supported dtypes: F32, BF16 (torch.bfloat16, stored as its raw 16 bits), F16, I64, I32, U8.
state_dict_tensors(module, prefix) turns a module's weights into save_file's input.
"""

import json
import struct

import numpy as np
import torch

# torch dtype -> (safetensors name, element size, numpy little-endian dtype of the raw bits)
_TORCH_TO_ST = {
    torch.float32: ("F32", 4, "<f4"),
    torch.bfloat16: ("BF16", 2, "<u2"),
    torch.float16: ("F16", 2, "<f2"),
    torch.int64: ("I64", 8, "<i8"),
    torch.int32: ("I32", 4, "<i4"),
    torch.int8: ("I8", 1, "<i1"),
    torch.uint8: ("U8", 1, "<u1"),
}
_ST_TO_TORCH = {v[0]: (k, v[1], v[2]) for k, v in _TORCH_TO_ST.items()}


def _raw_bytes(t):
    """The tensor's elements as little-endian bytes, row-major."""
    t = t.detach().cpu().contiguous()
    name, _, np_dtype = _TORCH_TO_ST[t.dtype]
    if t.dtype == torch.bfloat16:
        # Reinterpret the 16 bits (no rounding: the tensor already is bf16).
        arr = t.view(torch.int16).numpy().view(np.uint16)
    else:
        arr = t.numpy()
    return np.ascontiguousarray(arr).astype(np_dtype, copy=False).tobytes()


def state_dict_tensors(module, prefix=""):
    """The module's state_dict as a dict ready for save_file: every name with `prefix` prepended,
    every tensor detached, cloned (independent of the module's later changes) and contiguous,
    dtypes kept. The one export loop of the fixture writers (make_fixtures.py, fixtures_*.py)."""
    return {prefix + k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}


def write_header(f, header, entries):
    """Writes the length prefix and the JSON header: `header` (holding "__metadata__" if any)
    followed by `entries` (name -> {"dtype", "shape", "data_offsets"}) sorted by name, compact,
    padded with spaces to a multiple of 8 bytes (as the Rust/Python reference writes it)."""
    header = dict(header)
    for name in sorted(entries):
        header[name] = entries[name]
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    f.write(struct.pack("<Q", len(text)))
    f.write(text)


def save_file(tensors, path, metadata=None):
    """Writes dict name -> torch.Tensor to `path` as safetensors; metadata: dict str -> str."""
    for name, t in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError("bad tensor name %r" % (name,))
        if not isinstance(t, torch.Tensor):
            raise TypeError("%s: expected a torch.Tensor, got %s" % (name, type(t).__name__))
        if t.dtype not in _TORCH_TO_ST:
            raise TypeError("%s: unsupported dtype %s (supported: %s)"
                            % (name, t.dtype, ", ".join(v[0] for v in _TORCH_TO_ST.values())))
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("metadata must map str -> str (%r -> %r)" % (k, v))

    # Data layout: descending element size, then name (keeps every tensor aligned).
    order = sorted(tensors, key=lambda n: (-_TORCH_TO_ST[tensors[n].dtype][1], n))
    header = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    chunks = []
    offset = 0
    entries = {}
    for name in order:
        t = tensors[name]
        raw = _raw_bytes(t)
        entries[name] = {
            "dtype": _TORCH_TO_ST[t.dtype][0],
            "shape": [int(d) for d in t.shape],
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    with open(path, "wb") as f:
        write_header(f, header, entries)
        for c in chunks:
            f.write(c)


def load_file(path, with_metadata=False):
    """Reads a safetensors file into dict name -> torch.Tensor (and the metadata if asked)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: shorter than 8 bytes" % path)
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or 8 + n > len(data):
        raise ValueError("%s: bad header length %d" % (path, n))
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, e in header.items():
        dt, size, np_dtype = _ST_TO_TORCH[e["dtype"]]
        b, end = e["data_offsets"]
        shape = tuple(e["shape"])
        count = int(np.prod(shape)) if shape else 1
        if end - b != count * size or base + end > len(data):
            raise ValueError("%s: tensor %s has inconsistent offsets" % (path, name))
        arr = np.frombuffer(data, dtype=np_dtype, count=count, offset=base + b).copy()
        if dt == torch.bfloat16:
            t = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=False))
        out[name] = t.reshape(shape)
    return (out, metadata) if with_metadata else out


def _self_test():
    import os
    import tempfile
    g = torch.Generator().manual_seed(0)
    src = {
        "a.f32": torch.randn(3, 5, generator=g),
        "b.bf16": torch.randn(7, generator=g).to(torch.bfloat16),
        "c.f16": torch.randn(2, 2, 2, generator=g).to(torch.float16),
        "d.i64": torch.arange(5, dtype=torch.int64) - 2,
        "e.i32": torch.tensor([[1, -2], [3, 4]], dtype=torch.int32),
        "f.scalar": torch.tensor(3.25),
    }
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.safetensors")
        save_file(src, p, {"k": "2"})
        back, meta = load_file(p, with_metadata=True)
        assert meta == {"k": "2"}, meta
        assert set(back) == set(src)
        for k, v in src.items():
            assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
            assert torch.equal(back[k], v), k
        with open(p, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
        assert n % 8 == 0
    print("safetensors_io self-test passed")


if __name__ == "__main__":
    _self_test()
