# Flags for the project's own tests, benchmarks and examples (never imposed on consumers).
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

# Standard C++20 (-std=c++20, not gnu++20) for the project's own targets, so they check that
# the headers need no GNU extensions. Consumers keep their own setting.
set(CMAKE_CXX_EXTENSIONS OFF)

add_library(moe_project_options INTERFACE)
# Warnings: host C++ only; nvcc gets the same warnings through -Xcompiler.
target_compile_options(moe_project_options INTERFACE
  "$<$<COMPILE_LANGUAGE:CXX>:-Wall;-Wextra;-Wpedantic>"
  "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>")
if(MOE_WERROR)
  # Also the AVX/AVX-512 builds with GCC 12: the headers silence that compiler's false
  # -W(maybe-)uninitialized reports from its own intrinsics (bug 105593) themselves, in scope
  # (moe/core/simd_diagnostics.hpp), so nothing is suppressed here.
  target_compile_options(moe_project_options INTERFACE "$<$<COMPILE_LANGUAGE:CXX>:-Werror>")
endif()

# ccache, when it is installed and no launcher was chosen: rebuilds of unchanged TUs are free.
# CCACHE_BASEDIR (unless the environment sets one) makes the paths below the source tree
# relative in ccache's hashes, so another checkout of the same sources (a CI clone in a fresh
# directory) hits the cache too.
if(NOT CMAKE_CXX_COMPILER_LAUNCHER AND NOT DEFINED ENV{CMAKE_CXX_COMPILER_LAUNCHER})
  find_program(MOE_CCACHE ccache)
  if(MOE_CCACHE AND NOT DEFINED ENV{CCACHE_BASEDIR})
    set(CMAKE_CXX_COMPILER_LAUNCHER "${CMAKE_COMMAND};-E;env;CCACHE_BASEDIR=${PROJECT_SOURCE_DIR};${MOE_CCACHE}")
  elseif(MOE_CCACHE)
    set(CMAKE_CXX_COMPILER_LAUNCHER "${MOE_CCACHE}")
  endif()
endif()

# Instruction set: MOE_ARCH_FLAGS wins; else -march=native when MOE_NATIVE; else the compiler's
# default (x86-64 baseline = SSE2), which exercises the scalar/SSE code paths.
if(MOE_ARCH_FLAGS)
  separate_arguments(_moe_arch UNIX_COMMAND "${MOE_ARCH_FLAGS}")
  target_compile_options(moe_project_options INTERFACE "$<$<COMPILE_LANGUAGE:CXX>:${_moe_arch}>")
elseif(MOE_NATIVE)
  target_compile_options(moe_project_options INTERFACE "$<$<COMPILE_LANGUAGE:CXX>:-march=native>")
endif()

if(MOE_SANITIZE)
  target_compile_options(moe_project_options INTERFACE
    "$<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined;-fno-omit-frame-pointer;-fno-sanitize-recover=undefined>")
  target_link_options(moe_project_options INTERFACE -fsanitize=address,undefined)
endif()

# Optional third-party libraries that tests, examples and benchmarks may use (not moe::moe's
# dependencies): linked when found. nlohmann-json3-dev, libtiff-dev, libjpeg-dev (libjpeg-turbo)
# and zlib1g-dev on Debian.
add_library(moe_extra_deps INTERFACE)
find_package(nlohmann_json 3 QUIET)
if(nlohmann_json_FOUND)
  target_link_libraries(moe_extra_deps INTERFACE nlohmann_json::nlohmann_json)
endif()
find_package(TIFF QUIET)
if(TIFF_FOUND)
  target_link_libraries(moe_extra_deps INTERFACE TIFF::TIFF)
else()
  # <tiffio.h> may be visible without a usable libtiff: keep rs/tiff.hpp's reader out then.
  target_compile_definitions(moe_extra_deps INTERFACE MOE_RS_NO_TIFF)
endif()
find_package(JPEG QUIET)
if(JPEG_FOUND)
  target_link_libraries(moe_extra_deps INTERFACE JPEG::JPEG)
else()
  target_compile_definitions(moe_extra_deps INTERFACE MOE_RS_NO_JPEG)  # rs/jpeg.hpp declares nothing
endif()
find_package(ZLIB QUIET)
if(ZLIB_FOUND)
  target_link_libraries(moe_extra_deps INTERFACE ZLIB::ZLIB)
else()
  target_compile_definitions(moe_extra_deps INTERFACE MOE_RS_NO_PNG)  # rs/png.hpp declares nothing
endif()
