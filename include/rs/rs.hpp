// rs/rs.hpp - the remote-sensing inputs in one include: sensors, images, radiometry, adapters,
// the synthetic scene, drawing; and, where their C headers are available, the file formats of
// the target moe::rs_tiff: the GeoTIFF reader and writer (libtiff), the JPEG reader (libjpeg) and
// the PNG writer (zlib).
#pragma once

#include "rs/adapters.hpp"
#include "rs/draw.hpp"
#include "rs/image.hpp"
#include "rs/jpeg.hpp"
#include "rs/png.hpp"
#include "rs/radiometry.hpp"
#include "rs/sensors.hpp"
#include "rs/synth.hpp"
#include "rs/tiff.hpp"
#include "rs/tiff_write.hpp"
