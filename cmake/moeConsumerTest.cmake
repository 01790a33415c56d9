# ctest driver of the consumption tests: cmake -DMODE=find_package|add_subdirectory ... -P <this>
#   find_package:     configure moe alone (tests etc. OFF), install it to WORK_DIR/prefix, then
#                     build tests/consumer against that prefix and run it.
#   add_subdirectory: build tests/consumer_subdir, which add_subdirectory()s MOE_ROOT, and run it.
# Both build with -Wall -Wextra -Werror and moe::native; with -DREADME=<README.md> they also
# build and run the README's Quickstart snippet.
# Uses the generator, make program and C++ compiler of the main build.
cmake_minimum_required(VERSION 3.20)

foreach(_v MODE MOE_ROOT CONSUMERS_DIR WORK_DIR GENERATOR CXX_COMPILER HEADER)
  if(NOT DEFINED ${_v} OR "${${_v}}" STREQUAL "")
    message(FATAL_ERROR "moeConsumerTest.cmake: -D${_v}=... is required")
  endif()
endforeach()
if(NOT BUILD_TYPE)
  set(BUILD_TYPE Release)
endif()

set(_common -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
if(MAKE_PROGRAM)
  list(APPEND _common "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

function(moe_run)
  string(REPLACE ";" " " _pretty "${ARGN}")
  message(STATUS "+ ${_pretty}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "command failed (${_rc}): ${_pretty}")
  endif()
endfunction()

# The README's Quickstart: the first ```cpp block after "## Quickstart", written out as a
# source file the consumer builds and runs, so the README cannot drift from working code.
set(_snippet "")
if(README)
  file(READ "${README}" _readme)
  string(FIND "${_readme}" "## Quickstart" _at)
  if(_at LESS 0)
    message(FATAL_ERROR "${README} has no '## Quickstart' section")
  endif()
  string(SUBSTRING "${_readme}" ${_at} -1 _readme)
  if(NOT _readme MATCHES "```cpp\n(.*)")
    message(FATAL_ERROR "${README}: no ```cpp block in the Quickstart section")
  endif()
  set(_code "${CMAKE_MATCH_1}")
  string(FIND "${_code}" "```" _end)
  if(_end LESS 0)
    message(FATAL_ERROR "${README}: the Quickstart's ```cpp block is not closed")
  endif()
  string(SUBSTRING "${_code}" 0 ${_end} _code)
  set(_snippet "${WORK_DIR}/readme_quickstart.cpp")
  file(WRITE "${_snippet}" "// Extracted from ${README} (## Quickstart) by moeConsumerTest.cmake\n${_code}")
endif()

set(_bin "${WORK_DIR}/bin")
if(MODE STREQUAL "find_package")
  set(_prefix "${WORK_DIR}/prefix")
  file(REMOVE_RECURSE "${_prefix}")   # no stale headers from an earlier run
  moe_run("${CMAKE_COMMAND}" -S "${MOE_ROOT}" -B "${WORK_DIR}/moe-build" ${_common}
          "-DCMAKE_INSTALL_PREFIX=${_prefix}"
          -DMOE_BUILD_TESTS=OFF -DMOE_BUILD_BENCHMARKS=OFF -DMOE_BUILD_EXAMPLES=OFF -DMOE_BUILD_FUZZERS=OFF)
  moe_run("${CMAKE_COMMAND}" --build "${WORK_DIR}/moe-build" --config "${BUILD_TYPE}")
  moe_run("${CMAKE_COMMAND}" --install "${WORK_DIR}/moe-build" --config "${BUILD_TYPE}")
  moe_run("${CMAKE_COMMAND}" -S "${CONSUMERS_DIR}/consumer" -B "${WORK_DIR}/consumer-build" ${_common}
          "-DCMAKE_PREFIX_PATH=${_prefix}" "-DMOE_EXPECTED_PREFIX=${_prefix}"
          "-DMOE_CONSUMER_HEADER=${HEADER}" "-DCMAKE_RUNTIME_OUTPUT_DIRECTORY=${_bin}"
          "-DMOE_README_SNIPPET=${_snippet}")
elseif(MODE STREQUAL "add_subdirectory")
  moe_run("${CMAKE_COMMAND}" -S "${CONSUMERS_DIR}/consumer_subdir" -B "${WORK_DIR}/consumer-build" ${_common}
          "-DMOE_ROOT=${MOE_ROOT}"
          "-DMOE_CONSUMER_HEADER=${HEADER}" "-DCMAKE_RUNTIME_OUTPUT_DIRECTORY=${_bin}"
          "-DMOE_README_SNIPPET=${_snippet}")
else()
  message(FATAL_ERROR "moeConsumerTest.cmake: unknown MODE '${MODE}'")
endif()
moe_run("${CMAKE_COMMAND}" --build "${WORK_DIR}/consumer-build" --config "${BUILD_TYPE}")
moe_run("${_bin}/moe_consumer")
if(_snippet)
  # As printed: it writes and reads mixtral_layer0.safetensors in its working directory.
  message(STATUS "+ (in ${WORK_DIR}) ${_bin}/readme_quickstart")
  execute_process(COMMAND "${_bin}/readme_quickstart" WORKING_DIRECTORY "${WORK_DIR}" RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "the README's Quickstart snippet failed (${_rc})")
  endif()
endif()
