# Finds what moe::moe needs. Used by the build and, installed beside moeConfig.cmake, by consumers
# of find_package(moe). Keep it free of anything that only the project's own targets need.
include(CMakeFindDependencyMacro)

find_dependency(Eigen3 3.3 NO_MODULE)

# Debian's xsimd 8.1 package config links a target named `xtl` that it does not define
# (xtl is only needed by xsimd's xtensor glue). An empty interface target satisfies it.
if(NOT TARGET xtl)
  add_library(xtl INTERFACE IMPORTED)
endif()
find_dependency(xsimd 8)

if(DEFINED _moe_installed_with_openmp)
  # Installed package (set by moeConfig.cmake): moe::moe names OpenMP::OpenMP_CXX iff the
  # installed build used OpenMP, so that target must then exist.
  if(_moe_installed_with_openmp)
    find_dependency(OpenMP COMPONENTS CXX)
  endif()
elseif(NOT DEFINED MOE_ENABLE_OPENMP OR MOE_ENABLE_OPENMP)
  # The build itself: OpenMP is optional.
  find_package(OpenMP QUIET COMPONENTS CXX)
endif()

# libtiff, libjpeg, zlib: optional, only for the remote-sensing file formats (target moe::rs_tiff:
# GeoTIFF reader and writer include/rs/tiff.hpp and rs/tiff_write.hpp, JPEG reader rs/jpeg.hpp,
# PNG writer rs/png.hpp). moe::moe itself never links them. Plain find_package (not
# find_dependency): their absence is fine.
find_package(TIFF QUIET)
find_package(JPEG QUIET)
find_package(ZLIB QUIET)
