# Finds what moe::moe needs. Used by the build and, installed beside moeConfig.cmake, by consumers.
include(CMakeFindDependencyMacro)

find_dependency(Eigen3 3.3 NO_MODULE)

# Debian's xsimd 8.1 package config links a target named `xtl` that it does not define
# (xtl is only needed by xsimd's xtensor glue). An empty interface target satisfies it.
if(NOT TARGET xtl)
  add_library(xtl INTERFACE IMPORTED)
endif()
find_dependency(xsimd 8)

if(NOT DEFINED MOE_ENABLE_OPENMP OR MOE_ENABLE_OPENMP)
  find_package(OpenMP QUIET COMPONENTS CXX)
endif()
