// rs/rs.hpp - the remote-sensing inputs in one include: sensors, images, radiometry, adapters,
// the synthetic scene and, when <tiffio.h> is available, the GeoTIFF reader (link moe::rs_tiff).
#pragma once

#include "rs/adapters.hpp"
#include "rs/image.hpp"
#include "rs/radiometry.hpp"
#include "rs/sensors.hpp"
#include "rs/synth.hpp"
#include "rs/tiff.hpp"
