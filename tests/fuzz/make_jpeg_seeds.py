#!/usr/bin/python3
"""Writes the seeds of tests/fuzz/fuzz_jpeg.cpp: tests/fuzz/corpus/jpeg/seed*.jpg.

Needs PIL (python3-pil; it links the same libjpeg-turbo as the reader); deterministic; run with
/usr/bin/python3:

    /usr/bin/python3 tests/fuzz/make_jpeg_seeds.py

Tiny images (a few hundred bytes each) of every kind the reader meets or refuses: greyscale,
RGB with 4:4:4 / 4:2:2 / 4:2:0 subsampling, progressive (colour and grey), optimised Huffman
tables, a size that is not a whole number of MCUs, and CMYK (refused). PIL offers no restart
intervals, so no seed has them.
"""
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seedlib import write_seeds  # noqa: E402
from PIL import Image  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "jpeg")


def picture(mode, w, h):
    im = Image.new(mode, (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            v = (x * 29 + y * 13 + (x * y) % 11) % 256
            if mode == "L":
                px[x, y] = v
            elif mode == "RGB":
                px[x, y] = (v, 255 - v, (v * 5) % 256)
            else:
                px[x, y] = (v, 0, 255 - v, 30)
    return im


def jpeg(im, **kw):
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def main():
    seeds = {
        "seed0-gray.jpg": jpeg(picture("L", 8, 8), quality=75),
        "seed1-rgb444.jpg": jpeg(picture("RGB", 16, 8), quality=90, subsampling=0),
        "seed2-rgb422.jpg": jpeg(picture("RGB", 16, 16), quality=80, subsampling=1),
        "seed3-rgb420-odd.jpg": jpeg(picture("RGB", 13, 7), quality=70, subsampling=2),
        "seed4-progressive.jpg": jpeg(picture("RGB", 16, 16), quality=85, progressive=True),
        "seed5-optimized.jpg": jpeg(picture("RGB", 12, 12), quality=60, optimize=True),
        "seed6-cmyk.jpg": jpeg(picture("CMYK", 8, 8)),
        "seed7-gray-progressive.jpg": jpeg(picture("L", 9, 17), quality=50, progressive=True),
    }
    return write_seeds(OUT, seeds)


if __name__ == "__main__":
    sys.exit(main())
