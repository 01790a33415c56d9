#!/usr/bin/python3
"""Calibration crops for the RingMoE deployment chain on the trained tiny model.

    /usr/bin/python3 tools/reference/ringmoe_chain_check.py [--out build/ringmoe-tiny]

The deployment chain (include/rs/ringmoe/chain.hpp; examples/ringmoe_chain.cpp) counts expert
usage and fits the SVD fold on calibration images that should look like the deployment data,
and measures fidelity on held-out images. tools/reference/train_ringmoe_tiny.py writes the trained
checkpoint and the held-out crops (heldout_crops.safetensors); this script writes the matching
calibration set from the TRAINING images, with exactly the training script's preprocessing
(train_ringmoe_tiny.load_images: band selection, /255, dB clipping, reflectance) and
standardisation (its norm_stats over the training images, checked against the statistics the
held-out file records), cut on the same fixed grid the held-out crops use (heldout_crops: 4 x 4
crops of a 256 / 264 image, 2 x 2 of a 120 one, the whole of a 64 one; no flips or rotations).

Output: <out>/calibration_crops.safetensors, F32 [N, C, 64, 64] per modality named optical /
sar_l2 / multispectral (the held-out file's names), metadata <name>_sources (JSON list of
"file@y,x"), modality_index and normalisation as in the held-out file.
Exit 77 (skipped) when the data folder or the held-out file is missing.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train_ringmoe_tiny as tr  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.normpath(os.path.join(here, "../../../shared/data/rs")))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "../../build/ringmoe-tiny")))
    args = ap.parse_args(argv)
    held_path = os.path.join(args.out, "heldout_crops.safetensors")
    if not os.path.isdir(args.data) or not os.path.isfile(held_path):
        print("ringmoe_chain_check: needs %s and %s (run train_ringmoe_tiny.py first): skipped" % (args.data, held_path))
        return 77
    _, held_meta = load_file(held_path, with_metadata=True)
    stats = json.loads(held_meta["normalisation"])
    data = tr.load_images(args.data)
    out, meta = {}, {}
    for m in sorted(data):
        name = tr.MODALITY_NAMES[m]
        mean, std = tr.norm_stats(data[m]["train"])
        assert np.allclose(mean, stats[name]["mean"], rtol=1e-6, atol=1e-9), (name, mean, stats[name]["mean"])
        assert np.allclose(std, stats[name]["std"], rtol=1e-6, atol=1e-9), (name, std, stats[name]["std"])
        crops, names = tr.heldout_crops(data[m]["train"])
        crops = (crops - mean[None, :, None, None]) / std[None, :, None, None]
        out[name] = torch.from_numpy(np.ascontiguousarray(crops.astype(np.float32)))
        meta["%s_sources" % name] = json.dumps(names)
        print("%-14s %3d calibration crops from %d training images" % (name, len(names), len(data[m]["train"])))
    meta.update(modality_index=held_meta["modality_index"], normalisation=held_meta["normalisation"],
                normalised="true", crop=str(tr.CROP),
                layout="[N, C, 64, 64] float32: grid crops of the training images, standardised as the held-out crops")
    path = os.path.join(args.out, "calibration_crops.safetensors")
    save_file(out, path, meta)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
