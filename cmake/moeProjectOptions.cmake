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
  target_compile_options(moe_project_options INTERFACE "$<$<COMPILE_LANGUAGE:CXX>:-Werror>")
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    # GCC 12's AVX-512 intrinsics trip -W(maybe-)uninitialized on their own _mm512_undefined_*
    # (GCC bug 105593): keep the warnings, but do not fail -march=native builds on AVX-512 CPUs.
    target_compile_options(moe_project_options INTERFACE
      "$<$<COMPILE_LANGUAGE:CXX>:-Wno-error=maybe-uninitialized;-Wno-error=uninitialized>")
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
# dependencies): linked when found. nlohmann-json3-dev and libtiff-dev on Debian.
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
