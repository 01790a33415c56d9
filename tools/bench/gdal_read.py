#!/usr/bin/python3
"""GDAL baseline of bench/bench_rs.cpp: the same reading + preprocessing with Debian's GDAL
Python bindings (python3-gdal) and numpy, the way remote-sensing Python code does it.

    /usr/bin/python3 tools/bench/gdal_read.py [--data DIR] [--reps 5] [--min-time 0.3]

  rs/eurosat/read           gdal.Open + ReadAsArray (13 x 64 x 64 uint16) -> float32
  rs/eurosat/preprocess     + EuroSAT -> ESA band order, validity (DN != 0), reflectance DN / 10000,
                            normalisation with the EuroSAT statistics in reflectance units (in place)
  rs/ssl4eo_l2a/read        12 files; 20/60 m bands read with ReadAsArray(buf_xsize=264,
                            buf_ysize=264, resample_alg=GRIORA_Bilinear) (GDAL's resampling on
                            read), stacked -> float32 [12, 264, 264]
  rs/ssl4eo_l2a/preprocess  + baseline from metadata.json, reflectance, normalisation

One JSON object per line (tools/bench/common.py), named as the C++ benchmarks, "impl": "gdal".
The GDAL block cache is disabled (GDAL_CACHEMAX 0) and every iteration re-opens the files, as
the C++ side does.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, measure  # noqa: E402

from osgeo import gdal  # noqa: E402

gdal.UseExceptions()
gdal.SetCacheMax(0)

EUROSAT_MEAN = np.array([1354.40546513, 1118.24399958, 1042.92983953, 947.62620298, 1199.47283961, 1999.79090914,
                         2369.22292565, 2296.82608323, 732.08340178, 12.11327804, 1819.01027855, 1118.92391149,
                         2594.14080798], dtype=np.float32)
EUROSAT_STD = np.array([245.71762908, 333.00778264, 395.09249139, 593.75055589, 566.4170017, 861.18399006,
                        1086.63139075, 1117.98170791, 404.91978886, 4.77584468, 1002.58768311, 761.30323499,
                        1231.58581042], dtype=np.float32)
# EuroSAT file order B01..B12, B8A -> ESA order B01..B08, B8A, B09..B12
EUROSAT_TO_ESA = [0, 1, 2, 3, 4, 5, 6, 7, 12, 8, 9, 10, 11]
L2A_MEAN = np.array([752.40087073, 884.29673756, 1144.16202635, 1297.47289228, 1624.90992062, 2194.6423161,
                     2422.21248945, 2517.76053101, 2581.64687018, 2645.51888987, 2368.51236873, 1805.06846033],
                    dtype=np.float32)
L2A_STD = np.array([1108.02887453, 1155.15170768, 1183.6292542, 1368.11351514, 1370.265037, 1355.55390699,
                    1416.51487101, 1474.78900051, 1439.3086061, 1582.28010962, 1455.52084939, 1343.48379601],
                   dtype=np.float32)
L2A_FILES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]


def eurosat(path, preprocess):
    a = gdal.Open(path).ReadAsArray().astype(np.float32)
    if preprocess:
        a = a[EUROSAT_TO_ESA]
        valid = a != 0  # DN 0: nodata
        a /= 10000.0
        a -= (EUROSAT_MEAN[EUROSAT_TO_ESA] / 10000.0)[:, None, None]
        a /= (EUROSAT_STD[EUROSAT_TO_ESA] / 10000.0)[:, None, None]
        return a, valid
    return a


def ssl4eo(d, preprocess):
    out = np.empty((12, 264, 264), dtype=np.float32)
    for i, b in enumerate(L2A_FILES):
        ds = gdal.Open(os.path.join(d, b + ".tif"))
        out[i] = ds.ReadAsArray(buf_xsize=264, buf_ysize=264, resample_alg=gdal.GRIORA_Bilinear)
    if preprocess:
        with open(os.path.join(d, "metadata.json")) as f:
            baseline = float(json.load(f)["PROCESSING_BASELINE"])
        off = -1000.0 if baseline >= 4.0 else 0.0
        valid = out != 0
        out += off
        out /= 10000.0
        out -= ((L2A_MEAN + off) / 10000.0)[:, None, None]
        out /= (L2A_STD / 10000.0)[:, None, None]
        return out, valid
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("MOE_DATA_DIR",
                                                     os.path.join(here, "..", "..", "..", "shared", "data", "rs")))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.3)
    args = ap.parse_args()
    e = os.path.join(args.data, "EuroSAT_MS", "AnnualCrop", "AnnualCrop_1.tif")
    s = os.path.join(args.data, "SSL4EO-S12", "s2a", "0000200", "20200604T054639_20200604T054831_T43RCP")
    cases = [("rs/eurosat/read", lambda: eurosat(e, False)), ("rs/eurosat/preprocess", lambda: eurosat(e, True)),
             ("rs/ssl4eo_l2a/read", lambda: ssl4eo(s, False)), ("rs/ssl4eo_l2a/preprocess", lambda: ssl4eo(s, True))]
    for name, fn in cases:
        med, mn, _ = measure(fn, reps=args.reps, min_time=args.min_time)
        emit({"name": name, "impl": "gdal", "median_us": med * 1e6, "min_us": mn * 1e6, "gdal": gdal.__version__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
