// examples/image_input.hpp - how the vision-language examples (rsunivlm, rsmoe) read an image:
// RGB JPEG or TIFF (8-bit, or stretched 2-98 % when wider), or a 13-band Sentinel-2 TIFF in
// EuroSAT's band order shown in true colour, and its 8-bit RGB view as planar channels for the
// image processors (vision/preprocess.hpp).
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "moe/core/error.hpp"
#include "rs/draw.hpp"
#include "rs/jpeg.hpp"
#include "rs/tiff.hpp"

namespace moe_examples {

namespace fs = std::filesystem;
using moe::index_t;

/// An input image, its 8-bit RGB view and how it was read.
struct Input {
    fs::path path;
    moe::rs::Image image;
    moe::rs::Canvas rgb;
    std::string how;
};

inline Input read_input(const fs::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    Input in{p, {}, {}, {}};
    if (ext == ".jpg" || ext == ".jpeg") {
        in.image = moe::rs::read_jpeg(p);
        in.rgb = moe::rs::to_canvas(in.image, 0.0f, 255.0f);
        in.how = "JPEG, 8-bit RGB";
        return in;
    }
    if (ext != ".tif" && ext != ".tiff")
        throw moe::ConfigError(p.string(), "not a JPEG or TIFF file (extensions .jpg, .jpeg, .tif, .tiff)");
    const moe::rs::TiffInfo info = moe::rs::read_tiff_info(p);
    moe::rs::TiffReadOptions opt;
    if (info.samples_per_pixel == 13)  // EuroSAT's Sentinel-2 file order
        opt.band_names = {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"};
    in.image = moe::rs::read_tiff(p, opt);
    if (in.image.bands_count() == 13) {
        in.image = in.image.select({"B04", "B03", "B02"});
        in.rgb = moe::rs::to_canvas_stretch(in.image, 2.0, 98.0);
        in.how = "Sentinel-2 true colour (B04, B03, B02; 2-98 % stretch)";
        return in;
    }
    if (in.image.bands_count() != 3 && in.image.bands_count() != 1)
        throw moe::ConfigError(p.string(), moe::detail::cat("a TIFF of ", in.image.bands_count(),
                                                            " bands: give an RGB image or a 13-band Sentinel-2 one"));
    if (in.image.source_type() == moe::rs::SampleType::u8) {
        in.rgb = moe::rs::to_canvas(in.image, 0.0f, 255.0f);
        in.how = "TIFF, 8-bit";
    } else {
        in.rgb = moe::rs::to_canvas_stretch(in.image, 2.0, 98.0);
        in.how = moe::detail::cat("TIFF, ", moe::rs::sample_type_name(in.image.source_type()), " (2-98 % stretch)");
    }
    return in;
}

/// The 8-bit RGB view as planar channels [3, h, w] (what the image processors take).
inline std::vector<std::uint8_t> planar_rgb(const Input& in) {
    const moe::rs::Canvas& c = in.rgb;
    std::vector<std::uint8_t> planar(c.rgb.size());
    const std::size_t P = static_cast<std::size_t>(c.width * c.height);
    for (std::size_t i = 0; i < P; ++i)
        for (std::size_t k = 0; k < 3; ++k) planar[k * P + i] = c.rgb[i * 3 + k];
    return planar;
}

}  // namespace moe_examples
