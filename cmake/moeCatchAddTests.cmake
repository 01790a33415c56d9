# Test discovery for Catch2 v2, used by catch_discover_tests() in tests/CMakeLists.txt in place of
# Catch2's CatchAddTests.cmake (same interface; derived from it: BSD 3-Clause, Kitware/Catch2).
# What it fixes, for test case names as people write them:
#   * a ';' in a name split it into two bogus tests (CMake list separator);
#   * a name starting with '-' was taken for a command-line option ("Unrecognised token");
#   * a name with '\' or '"' was not escaped;
#   * a spec that matched no test case ran nothing and passed: every test runs with
#     `--warn NoTests`, so it fails instead.
set(prefix "${TEST_PREFIX}")
set(suffix "${TEST_SUFFIX}")
set(spec ${TEST_SPEC})
set(extra_args ${TEST_EXTRA_ARGS})
set(properties ${TEST_PROPERTIES})
set(reporter ${TEST_REPORTER})
set(output_dir ${TEST_OUTPUT_DIR})
set(output_prefix ${TEST_OUTPUT_PREFIX})
set(output_suffix ${TEST_OUTPUT_SUFFIX})
set(script)
set(tests)
set(_semi "@MOE_SEMICOLON@")

function(add_command NAME)
  set(_args "")
  math(EXPR _last_arg ${ARGC}-1)
  foreach(_n RANGE 1 ${_last_arg})
    set(_arg "${ARGV${_n}}")
    string(REPLACE "${_semi}" ";" _arg "${_arg}")
    if(_arg STREQUAL "")
      continue()
    elseif(_arg MATCHES "[^-./:a-zA-Z0-9_]")
      set(_args "${_args} [==[${_arg}]==]")  # a bracket argument: taken verbatim, never split
    else()
      set(_args "${_args} ${_arg}")
    endif()
  endforeach()
  set(script "${script}${NAME}(${_args})\n" PARENT_SCOPE)
endfunction()

if(NOT EXISTS "${TEST_EXECUTABLE}")
  message(FATAL_ERROR "Specified test executable '${TEST_EXECUTABLE}' does not exist")
endif()
execute_process(
  COMMAND ${TEST_EXECUTOR} "${TEST_EXECUTABLE}" ${spec} --list-test-names-only
  OUTPUT_VARIABLE output
  RESULT_VARIABLE result
  WORKING_DIRECTORY "${TEST_WORKING_DIR}")
# --list-test-names-only exits with the number of test cases; a signal gives a string.
if(NOT result MATCHES "^[0-9]+$")
  message(FATAL_ERROR "Error running test executable '${TEST_EXECUTABLE}':\n  Result: ${result}\n  Output: ${output}\n")
endif()

if(reporter)
  set(reporter_arg "--reporter;${reporter}")
endif()
if(output_dir AND NOT IS_ABSOLUTE "${output_dir}")
  set(output_dir "${TEST_WORKING_DIR}/${output_dir}")
  file(MAKE_DIRECTORY "${output_dir}")
endif()

string(REPLACE ";" "${_semi}" output "${output}")
string(REPLACE "\n" ";" output "${output}")
foreach(test IN LISTS output)
  if(test STREQUAL "")
    continue()
  endif()
  # The test spec that selects exactly this case: escape \ , [ ] " and a leading '-'.
  set(test_name "${test}")
  foreach(char "\\" "," "[" "]" "\"")
    string(REPLACE "${char}" "\\${char}" test_name "${test_name}")
  endforeach()
  if(test_name MATCHES "^-")
    set(test_name "\\${test_name}")
  endif()
  set(output_dir_arg "")
  if(output_dir)
    string(REGEX REPLACE "[^A-Za-z0-9_]" "_" test_name_clean "${test}")
    set(output_dir_arg "--out;${output_dir}/${output_prefix}${test_name_clean}${output_suffix}")
  endif()
  add_command(add_test "${prefix}${test}${suffix}" ${TEST_EXECUTOR} "${TEST_EXECUTABLE}" "${test_name}"
              --warn NoTests ${extra_args} ${reporter_arg} ${output_dir_arg})
  add_command(set_tests_properties "${prefix}${test}${suffix}" PROPERTIES
              WORKING_DIRECTORY "${TEST_WORKING_DIR}" ${properties})
  list(APPEND tests "${prefix}${test}${suffix}")
endforeach()

add_command(set ${TEST_LIST} ${tests})
file(WRITE "${CTEST_FILE}" "${script}")
