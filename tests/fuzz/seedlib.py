"""Shared by the seed-corpus writers of tests/fuzz: writes {name: bytes} into a folder."""

import os


def write_seeds(out, seeds, limit=4096):
    """Writes every seed (each under `limit` bytes) to out/<name> and lists them."""
    os.makedirs(out, exist_ok=True)
    for name, blob in sorted(seeds.items()):
        assert len(blob) < limit, (name, len(blob))
        path = os.path.join(out, name)
        with open(path, "wb") as f:
            f.write(blob)
        print(f"{len(blob):5d}  {os.path.relpath(path)}")
    return 0
