#!/usr/bin/env python3
"""Checks that no public header includes a header on a higher floor (docs/architecture.md).

Floors, lowest first (a header may include headers of its own floor or lower ones):
  0 core      moe/core/, moe/core.hpp
  1 backend   moe/backend/, moe/backend.hpp
  2 router    moe/router/, moe/router.hpp
  3 expert    moe/expert/, moe/expert.hpp
  4 layer     moe/layer/, moe/layer.hpp
  5 io        moe/io/ (formats and checkpoint access by tensor name), moe/io.hpp
  6 loaders   moe/loaders/ (MoE layers built from checkpoints), moe/loaders.hpp
  7 prune     moe/prune/, moe/prune.hpp
  8 dist      moe/dist/ (expert parallelism over MPI; includes <mpi.h>, so not in moe.hpp)
  9 umbrella  moe/moe.hpp
 10 vision    vision/
 11 lm        lm/ (tokenizers and their Unicode layer; may include moe/core and moe/io only)
 12 lm model  lm/decoder/, lm/decoder.hpp, lm/lm.hpp (the decoder runtime: any floor below)
 13 rs        rs/
Usage: check_floors.py [INCLUDE_DIR]   (default: include/ beside this script's repository)
Exit 0 when every include goes down or sideways, 1 with one line per violation otherwise.
"""
import os
import re
import sys

FLOORS = [("core", ["moe/core/", "moe/core.hpp"]), ("backend", ["moe/backend/", "moe/backend.hpp"]),
          ("router", ["moe/router/", "moe/router.hpp"]), ("expert", ["moe/expert/", "moe/expert.hpp"]),
          ("layer", ["moe/layer/", "moe/layer.hpp"]), ("io", ["moe/io/", "moe/io.hpp"]),
          ("loaders", ["moe/loaders/", "moe/loaders.hpp"]), ("prune", ["moe/prune/", "moe/prune.hpp"]),
          ("dist", ["moe/dist/", "moe/dist.hpp"]), ("umbrella", ["moe/moe.hpp"]),
          ("vision", ["vision/"]), ("lm", ["lm/"]),
          ("lm model", ["lm/decoder/", "lm/decoder.hpp", "lm/lm.hpp"]), ("rs", ["rs/"])]
# Floors that may include only some of the floors below them: {floor: allowed lower folders}.
ONLY = {"lm": ["moe/core/", "moe/core.hpp", "moe/io/", "moe/io.hpp", "lm/"]}
# Floors that must not include some lower folders: {floor: forbidden folders}. The umbrella stays
# free of MPI (moe/dist/ includes <mpi.h>).
NOT = {"umbrella": ["moe/dist/", "moe/dist.hpp"]}


def floor_of(rel):
    """The floor of the longest matching prefix (lm/decoder/ is not lm/)."""
    best, best_len = None, -1
    for i, (name, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (rel == p or (p.endswith("/") and rel.startswith(p))) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "include")
    root = os.path.normpath(root)
    inc = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')
    bad, unknown, n = [], [], 0
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith((".hpp", ".cuh")):
                continue
            path = os.path.join(d, f)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            fl = floor_of(rel)
            if fl is None:
                unknown.append(rel)
                continue
            n += 1
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    m = inc.match(line)
                    if not m:
                        continue
                    target = m.group(1)
                    if not os.path.exists(os.path.join(root, target)):
                        continue  # a system or third-party header
                    tf = floor_of(target)
                    if tf is not None and tf > fl:
                        bad.append("%s:%d: %s (floor %s) includes %s (floor %s, higher)" % (
                            rel, lineno, rel, FLOORS[fl][0], target, FLOORS[tf][0]))
                    allowed = ONLY.get(FLOORS[fl][0])
                    if tf is not None and allowed is not None and not any(
                            target == p or (p.endswith("/") and target.startswith(p)) for p in allowed):
                        bad.append("%s:%d: %s (floor %s) includes %s: floor %s may include only %s" % (
                            rel, lineno, rel, FLOORS[fl][0], target, FLOORS[fl][0], ", ".join(allowed)))
                    banned = NOT.get(FLOORS[fl][0], [])
                    if any(target == p or (p.endswith("/") and target.startswith(p)) for p in banned):
                        bad.append("%s:%d: %s (floor %s) includes %s: floor %s must not include %s" % (
                            rel, lineno, rel, FLOORS[fl][0], target, FLOORS[fl][0], ", ".join(banned)))
    for u in unknown:
        bad.append("%s: on no floor: place it in one of the floors' folders (tools/check_floors.py)" % u)
    for b in bad:
        print(b)
    print("check_floors: %d headers, %d violation(s)" % (n, len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
