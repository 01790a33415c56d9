// rs/draw.hpp - an 8-bit RGB canvas for looking at images, boxes and masks (no file format, no
// dependency: write it with rs/png.hpp, PngView::rgb(c.width, c.height, c.rgb)).
//
//   to_canvas(img, lo, hi)          3 bands (those named R, G, B if present, else the first three
//                                   of a 3-band image) or 1 band (grey), value lo -> 0, hi -> 255
//                                   (linear, clamped, rounded to nearest); e.g. 0..255 for photos
//                                   read by rs/jpeg.hpp, where it reproduces the bytes exactly.
//   to_canvas(img, bounds)          per-band ranges, e.g. from rs::percentile_clip
//   to_canvas_stretch(img, 2, 98)   per-band 2nd..98th percentile stretch over the valid pixels
//                                   (rs/radiometry.hpp's percentile_clip on a copy): true colour
//                                   for Sentinel-2 reflectances after img.select({"B04","B03","B02"}).
//   Invalid pixels (mask 0), NaN, and bands whose range is empty or NaN come out as 0.
//   draw_rectangle(c, x1, y1, x2, y2, rgb, thickness = 2)
//                                   cv2.rectangle's conventions: (x1, y1) and (x2, y2) are opposite
//                                   corners, both inclusive, in either order; thickness < 0 fills.
//                                   A thickness t edge is t pixels wide, centred on the corner
//                                   line (an even t puts the extra pixel outside the box); corners
//                                   are square (OpenCV rounds thick corners, so its outer corner
//                                   pixels may differ). Everything outside the canvas is clipped.
//   overlay_mask(c, mask, rgb, alpha)
//                                   blends rgb into the pixels whose mask byte is non-zero:
//                                   round((1 - alpha) * pixel + alpha * rgb).
//   overlay_classes(c, classes, palette, alpha, background = 0)
//                                   the same with a colour per class (palette[class]); pixels of
//                                   class `background` (-1: none) are left alone.
//   class_palette(n)                n distinct colours (black first, for class 0 / background),
//                                   as Rgb values or flat RGB bytes for an indexed PNG.
//
// Errors: moe::ShapeError (a band count other than 1 or 3 without R/G/B, a mask that is not one
// byte per canvas pixel, a canvas whose pixel buffer does not match its size), ConfigError (alpha
// outside 0..1, thickness 0, lo/hi bounds not covering the bands), ValueError (a class beyond the
// palette).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "moe/core/error.hpp"
#include "rs/image.hpp"
#include "rs/radiometry.hpp"

namespace moe::rs {

/// An 8-bit colour.
struct Rgb {
    std::uint8_t r = 0, g = 0, b = 0;
    friend bool operator==(const Rgb&, const Rgb&) = default;
};

/// An 8-bit RGB raster, row-major, pixel-interleaved (r, g, b, r, g, b, ...).
struct Canvas {
    index_t width = 0, height = 0;
    std::vector<std::uint8_t> rgb;

    Canvas() = default;
    Canvas(index_t w, index_t h, Rgb fill = {}) : width(w), height(h) {
        check<ShapeError>(w > 0 && h > 0, "rs::Canvas", "size ", w, " x ", h, " is empty");
        rgb.resize(static_cast<std::size_t>(w * h * 3));
        for (std::size_t i = 0; i < rgb.size(); i += 3) rgb[i] = fill.r, rgb[i + 1] = fill.g, rgb[i + 2] = fill.b;
    }
    bool contains(index_t x, index_t y) const noexcept { return x >= 0 && y >= 0 && x < width && y < height; }
    Rgb at(index_t x, index_t y) const noexcept {
        const auto i = static_cast<std::size_t>((y * width + x) * 3);
        return {rgb[i], rgb[i + 1], rgb[i + 2]};
    }
    void set(index_t x, index_t y, Rgb c) noexcept {
        const auto i = static_cast<std::size_t>((y * width + x) * 3);
        rgb[i] = c.r, rgb[i + 1] = c.g, rgb[i + 2] = c.b;
    }
};

namespace detail {

inline void check_canvas(const Canvas& c, const char* where) {
    check<ShapeError>(c.width > 0 && c.height > 0 &&
                          c.rgb.size() == static_cast<std::size_t>(c.width) * static_cast<std::size_t>(c.height) * 3,
                      where, "canvas of ", c.width, " x ", c.height, " has ", c.rgb.size(), " bytes");
}

/// The bands a canvas shows: R, G, B by name, else all of a 1- or 3-band image.
inline std::vector<index_t> canvas_bands(const Image& img) {
    const auto r = img.find("R"), g = img.find("G"), b = img.find("B");
    if (r && g && b) return {*r, *g, *b};
    if (img.bands_count() == 3) return {0, 1, 2};
    if (img.bands_count() == 1) return {0, 0, 0};
    throw ShapeError("rs::to_canvas",
                     moe::detail::cat("an image of ", img.bands_count(), " bands (", detail::join(img.band_names()),
                                      ") has no R, G, B bands: select three (or one) first, e.g. "
                                      "img.select({\"B04\", \"B03\", \"B02\"})"));
}

inline std::uint8_t to_byte(float v, float lo, float hi, bool valid) noexcept {
    if (!valid || !(hi > lo) || std::isnan(v)) return 0;  // also catches NaN bounds
    const float t = (v - lo) * (255.0f / (hi - lo));
    if (!(t > 0.0f)) return 0;
    if (t >= 255.0f) return 255;
    return static_cast<std::uint8_t>(std::lround(t));
}

inline std::uint8_t blend(std::uint8_t a, std::uint8_t b, float alpha) noexcept {
    const float v = (1.0f - alpha) * float(a) + alpha * float(b);
    return static_cast<std::uint8_t>(std::clamp(std::lround(v), 0l, 255l));
}

}  // namespace detail

/// The canvas of `img` with per-band ranges: output channel k (R, G, B) maps [lo[k], hi[k]] to 0..255.
inline Canvas to_canvas(const Image& img, const std::array<float, 3>& lo, const std::array<float, 3>& hi) {
    const auto bands = detail::canvas_bands(img);
    Canvas c(img.width(), img.height());
    const auto P = static_cast<std::size_t>(img.pixels());
    for (std::size_t k = 0; k < 3; ++k) {
        const auto d = img.band(bands[k]);
        const auto m = img.mask(bands[k]);
        for (std::size_t i = 0; i < P; ++i) c.rgb[i * 3 + k] = detail::to_byte(d[i], lo[k], hi[k], m.empty() || m[i]);
    }
    return c;
}

/// The canvas of `img` with one range for every band (0, 255 for 8-bit photos).
inline Canvas to_canvas(const Image& img, float lo, float hi) { return to_canvas(img, {lo, lo, lo}, {hi, hi, hi}); }

/// The canvas of `img` with the ranges of `bounds` (matched by band name, e.g. percentile_clip's).
inline Canvas to_canvas(const Image& img, const BandBounds& bounds) {
    const auto bands = detail::canvas_bands(img);
    std::array<float, 3> lo{}, hi{};
    for (std::size_t k = 0; k < 3; ++k) {
        const std::string& name = img.band_names()[static_cast<std::size_t>(bands[k])];
        std::size_t j = 0;
        while (j < bounds.bands.size() && !detail::iequals(bounds.bands[j], name)) ++j;
        check<ConfigError>(j < bounds.bands.size() && j < bounds.lo.size() && j < bounds.hi.size(), "rs::to_canvas",
                           "no bounds for band '", name, "'");
        lo[k] = bounds.lo[j];
        hi[k] = bounds.hi[j];
    }
    return to_canvas(img, lo, hi);
}

/// The canvas of `img` with each shown band stretched from its lo_pct to its hi_pct percentile
/// over its valid pixels (numpy.percentile's interpolation).
inline Canvas to_canvas_stretch(const Image& img, double lo_pct = 2.0, double hi_pct = 98.0) {
    const auto bands = detail::canvas_bands(img);
    std::vector<std::string> names;
    for (auto b : bands)
        if (std::find(names.begin(), names.end(), img.band_names()[static_cast<std::size_t>(b)]) == names.end())
            names.push_back(img.band_names()[static_cast<std::size_t>(b)]);
    Image shown = img.select(names);
    const BandBounds bounds = percentile_clip(shown, lo_pct, hi_pct);
    return to_canvas(img, bounds);
}

/// Draws the rectangle with inclusive corners (x1, y1), (x2, y2) (see the file comment).
inline void draw_rectangle(Canvas& c, index_t x1, index_t y1, index_t x2, index_t y2, Rgb colour, int thickness = 2) {
    detail::check_canvas(c, "rs::draw_rectangle");
    check<ConfigError>(thickness != 0, "rs::draw_rectangle", "thickness 0 draws nothing (negative: filled)");
    if (x1 > x2) std::swap(x1, x2);
    if (y1 > y2) std::swap(y1, y2);
    const auto fill = [&](index_t xa, index_t ya, index_t xb, index_t yb) {  // inclusive, clipped
        xa = std::max<index_t>(xa, 0), ya = std::max<index_t>(ya, 0);
        xb = std::min<index_t>(xb, c.width - 1), yb = std::min<index_t>(yb, c.height - 1);
        for (index_t y = ya; y <= yb; ++y)
            for (index_t x = xa; x <= xb; ++x) c.set(x, y, colour);
    };
    if (thickness < 0) {
        fill(x1, y1, x2, y2);
        return;
    }
    const index_t out = thickness / 2, in = (thickness - 1) / 2;  // pixels outside / inside the line
    fill(x1 - out, y1 - out, x2 + out, y1 + in);  // top
    fill(x1 - out, y2 - in, x2 + out, y2 + out);  // bottom
    fill(x1 - out, y1 - out, x1 + in, y2 + out);  // left
    fill(x2 - in, y1 - out, x2 + out, y2 + out);  // right
}

/// Blends `colour` into the pixels whose `mask` byte (one per canvas pixel) is non-zero.
inline void overlay_mask(Canvas& c, std::span<const std::uint8_t> mask, Rgb colour, float alpha = 0.5f) {
    detail::check_canvas(c, "rs::overlay_mask");
    check<ShapeError>(mask.size() == static_cast<std::size_t>(c.width * c.height), "rs::overlay_mask", "mask of ",
                      mask.size(), " bytes for a canvas of ", c.width, " x ", c.height);
    check<ConfigError>(alpha >= 0.0f && alpha <= 1.0f, "rs::overlay_mask", "alpha ", alpha, " is outside 0..1");
    for (std::size_t i = 0; i < mask.size(); ++i) {
        if (!mask[i]) continue;
        std::uint8_t* p = c.rgb.data() + i * 3;
        p[0] = detail::blend(p[0], colour.r, alpha);
        p[1] = detail::blend(p[1], colour.g, alpha);
        p[2] = detail::blend(p[2], colour.b, alpha);
    }
}

/// Blends palette[class] into every pixel whose class (one byte per canvas pixel) is not
/// `background` (-1: blend every pixel).
inline void overlay_classes(Canvas& c, std::span<const std::uint8_t> classes, std::span<const Rgb> palette,
                            float alpha = 0.5f, int background = 0) {
    detail::check_canvas(c, "rs::overlay_classes");
    check<ShapeError>(classes.size() == static_cast<std::size_t>(c.width * c.height), "rs::overlay_classes",
                      "class map of ", classes.size(), " bytes for a canvas of ", c.width, " x ", c.height);
    check<ConfigError>(alpha >= 0.0f && alpha <= 1.0f, "rs::overlay_classes", "alpha ", alpha, " is outside 0..1");
    for (std::size_t i = 0; i < classes.size(); ++i) {
        const int k = classes[i];
        if (k == background) continue;
        check<ValueError>(static_cast<std::size_t>(k) < palette.size(), "rs::overlay_classes", "pixel ", i,
                          " has class ", k, " beyond the palette's ", palette.size(), " colours");
        std::uint8_t* p = c.rgb.data() + i * 3;
        const Rgb col = palette[static_cast<std::size_t>(k)];
        p[0] = detail::blend(p[0], col.r, alpha);
        p[1] = detail::blend(p[1], col.g, alpha);
        p[2] = detail::blend(p[2], col.b, alpha);
    }
}

/// `n` (1..256) distinct colours: black, then saturated hues spread around the colour wheel with
/// alternating brightness (deterministic).
inline std::vector<Rgb> class_palette(int n) {
    check<ConfigError>(n >= 1 && n <= 256, "rs::class_palette", n, " colours; 1..256 fit an indexed PNG");
    std::vector<Rgb> p{Rgb{0, 0, 0}};
    for (int i = 1; i < n; ++i) {
        // Golden-ratio hue steps; value alternates 1.0 / 0.7 so neighbours differ in brightness too.
        const double h = std::fmod(double(i - 1) * 0.618033988749895, 1.0) * 6.0;
        const double v = (i % 2) ? 1.0 : 0.7, s = 0.85;
        const int sector = static_cast<int>(h);
        const double f = h - sector, pp = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
        double r = v, g = t, b = pp;
        switch (sector) {
            case 1: r = q, g = v, b = pp; break;
            case 2: r = pp, g = v, b = t; break;
            case 3: r = pp, g = q, b = v; break;
            case 4: r = t, g = pp, b = v; break;
            case 5: r = v, g = pp, b = q; break;
            default: break;
        }
        const auto byte = [](double x) { return static_cast<std::uint8_t>(std::lround(x * 255.0)); };
        p.push_back({byte(r), byte(g), byte(b)});
    }
    return p;
}

/// The palette as flat RGB bytes (PngView::indexed's palette).
inline std::vector<std::uint8_t> palette_bytes(std::span<const Rgb> palette) {
    std::vector<std::uint8_t> out;
    out.reserve(palette.size() * 3);
    for (const Rgb& c : palette) out.insert(out.end(), {c.r, c.g, c.b});
    return out;
}

}  // namespace moe::rs
