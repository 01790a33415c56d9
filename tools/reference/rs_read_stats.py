#!/usr/bin/python3
"""Independent reading of the real remote-sensing samples, for tests/unit/test_rs_real.cpp.

    /usr/bin/python3 tools/reference/rs_read_stats.py <data dir>

For every *.tif / *.TIF under <data dir> (sorted by relative path) prints one line

    <relpath>|<bands>|<height>|<width>|<dtype>|<sum>|<sumsq>|<min>|<max>|<nodata>|<n_nodata>|<epsg>|<reader>

computed from the samples as Python reads them: with tifffile (pure Python + zlib; it does not
use libtiff) where it can decode the file, else with GDAL's Python bindings (LZW needs
imagecodecs, which Debian's tifffile lacks). Sums are over every sample in float64; <nodata> is
the GDAL_NODATA value or "none", <n_nodata> the number of samples equal to it; <epsg> is the
ProjectedCSTypeGeoKey or GeographicTypeGeoKey, 0 if none. Exits 77 when neither tifffile nor GDAL
imports (the C++ test then skips).
"""

import math
import os
import sys

try:
    import numpy as np
except ImportError:
    sys.exit(77)

try:
    import tifffile
except ImportError:
    tifffile = None
try:
    from osgeo import gdal
    gdal.UseExceptions()
except ImportError:
    gdal = None


def read_tifffile(path):
    with tifffile.TiffFile(path) as t:
        p = t.pages[0]
        a = p.asarray()
        nodata = p.tags["GDAL_NODATA"].value if "GDAL_NODATA" in p.tags else None
        gk = p.geotiff_tags or {}
        epsg = gk.get("ProjectedCSTypeGeoKey", gk.get("GeographicTypeGeoKey", 0))
        epsg = int(getattr(epsg, "value", epsg) or 0)
        spp = p.samplesperpixel
        # bands first
        if spp > 1 and p.planarconfig == 1:
            a = np.moveaxis(a, -1, 0)
        elif a.ndim == 2:
            a = a[None]
        return a, nodata, epsg


def read_gdal(path):
    ds = gdal.Open(path)
    a = ds.ReadAsArray()
    if a.ndim == 2:
        a = a[None]
    nd = ds.GetRasterBand(1).GetNoDataValue()
    epsg = 0
    srs = ds.GetSpatialRef()
    if srs is not None:
        code = srs.GetAuthorityCode(None)
        epsg = int(code) if code else 0
    return a, (None if nd is None else repr(nd)), epsg


def main():
    if tifffile is None and gdal is None:
        print("neither tifffile nor GDAL is importable", file=sys.stderr)
        return 77
    root = sys.argv[1]
    files = []
    for d, _, names in os.walk(root):
        for n in names:
            if n.lower().endswith((".tif", ".tiff")):
                files.append(os.path.relpath(os.path.join(d, n), root))
    for rel in sorted(files):
        path = os.path.join(root, rel)
        a = None
        reader = None
        if tifffile is not None:
            try:
                a, nodata, epsg = read_tifffile(path)
                reader = "tifffile"
            except Exception:  # noqa: BLE001 - fall back to GDAL (e.g. LZW without imagecodecs)
                a = None
        if a is None and gdal is not None:
            a, nodata, epsg = read_gdal(path)
            reader = "gdal"
        if a is None:
            print("%s|unreadable" % rel)
            continue
        f = a.astype(np.float64)
        nd = "none"
        n_nd = 0
        if nodata is not None:
            ndv = float(str(nodata).strip().strip("\x00"))
            nd = repr(ndv)
            n_nd = int(np.isnan(f).sum()) if math.isnan(ndv) else int((f == ndv).sum())
        print("%s|%d|%d|%d|%s|%.17g|%.17g|%.17g|%.17g|%s|%d|%d|%s" % (
            rel, a.shape[0], a.shape[1], a.shape[2], a.dtype.name, f.sum(), (f * f).sum(), f.min(), f.max(),
            nd, n_nd, epsg, reader))
    return 0


if __name__ == "__main__":
    sys.exit(main())
