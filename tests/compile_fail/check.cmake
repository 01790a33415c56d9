# Runs one compile-fail (or compile) test: cmake -DCOMPILER=... -DSOURCE=... -DINCLUDES=a|b
#   -DSYSTEM_INCLUDES=c|d -DIMPLICIT_INCLUDES=e|f -DSTANDARD=20 -P check.cmake
#
# SOURCE holds either one or more "// expect: TEXT" lines, and then must FAIL to compile with
# every TEXT in the compiler's output, or a "// expect-success" line, and then must compile.
# A source with neither is an error. Lists are '|'-separated; system include directories that
# are also the compiler's implicit ones (/usr/include) are left out, as CMake does (passing them
# as -isystem breaks libstdc++'s #include_next).
cmake_minimum_required(VERSION 3.20)

foreach(_v COMPILER SOURCE)
  if(NOT DEFINED ${_v} OR "${${_v}}" STREQUAL "")
    message(FATAL_ERROR "check.cmake: -D${_v}=... is required")
  endif()
endforeach()
if(NOT DEFINED STANDARD)
  set(STANDARD 20)
endif()

file(STRINGS "${SOURCE}" _expect_lines REGEX "^[ \t]*//[ \t]*expect:")
file(STRINGS "${SOURCE}" _success_lines REGEX "^[ \t]*//[ \t]*expect-success[ \t]*$")
set(_expected "")
foreach(_l IN LISTS _expect_lines)
  string(REGEX REPLACE "^[ \t]*//[ \t]*expect:[ \t]*" "" _t "${_l}")
  string(STRIP "${_t}" _t)
  if(_t STREQUAL "")
    message(FATAL_ERROR "${SOURCE}: empty '// expect:' line")
  endif()
  list(APPEND _expected "${_t}")
endforeach()
if(_expected AND _success_lines)
  message(FATAL_ERROR "${SOURCE}: has both '// expect:' and '// expect-success' lines")
elseif(NOT _expected AND NOT _success_lines)
  message(FATAL_ERROR "${SOURCE}: no '// expect: TEXT' (must not compile) or '// expect-success' (must compile) line")
endif()

string(REPLACE "|" ";" _inc "${INCLUDES}")
string(REPLACE "|" ";" _sys "${SYSTEM_INCLUDES}")
string(REPLACE "|" ";" _implicit "${IMPLICIT_INCLUDES}")
set(_flags "")
foreach(_d IN LISTS _inc)
  if(NOT _d STREQUAL "")
    list(APPEND _flags "-I${_d}")
  endif()
endforeach()
foreach(_d IN LISTS _sys)
  if(NOT _d STREQUAL "" AND NOT _d IN_LIST _implicit AND NOT _d IN_LIST _inc)
    list(APPEND _flags "-isystem" "${_d}")
  endif()
endforeach()

# Plain ASCII quotes in GCC's messages, whatever the caller's locale.
set(ENV{LC_ALL} C)
set(ENV{LANG} C)
execute_process(
  COMMAND "${COMPILER}" -std=c++${STANDARD} -fsyntax-only ${_flags} "${SOURCE}"
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
string(REPLACE ";" " " _cmd "${COMPILER} -std=c++${STANDARD} -fsyntax-only ${_flags} ${SOURCE}")

if(_success_lines)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "FAIL: ${SOURCE} must compile but did not (exit ${_rc}):\n  ${_cmd}\n${_out}")
  endif()
  message(STATUS "ok: ${SOURCE} compiles")
  return()
endif()

if(_rc EQUAL 0)
  message(FATAL_ERROR "FAIL: ${SOURCE} compiled, but it must be rejected:\n  ${_cmd}\n${_out}")
endif()
set(_missing "")
foreach(_t IN LISTS _expected)
  string(FIND "${_out}" "${_t}" _pos)
  if(_pos EQUAL -1)
    list(APPEND _missing "${_t}")
  endif()
endforeach()
if(_missing)
  string(REPLACE ";" "', '" _m "${_missing}")
  message(FATAL_ERROR "FAIL: ${SOURCE} was rejected (exit ${_rc}), but the output lacks '${_m}':\n  ${_cmd}\n${_out}")
endif()
string(REPLACE ";" "', '" _e "${_expected}")
message(STATUS "ok: ${SOURCE} is rejected, and the output names '${_e}'")
