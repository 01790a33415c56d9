# The consumer programs, shared by tests/consumer (find_package) and tests/consumer_subdir
# (add_subdirectory). As a user with strict flags would build: every warning an error, the
# fast path (moe::native). Expects MOE_CONSUMER_HEADER and, optionally, MOE_README_SNIPPET.
set(MOE_CONSUMER_HEADER "moe/moe.hpp" CACHE STRING "The moe header main.cpp includes")
configure_file("${CMAKE_CURRENT_LIST_DIR}/consumer_config.hpp.in" consumer_config.hpp @ONLY)
add_executable(moe_consumer "${CMAKE_CURRENT_LIST_DIR}/main.cpp")
target_include_directories(moe_consumer PRIVATE "${CMAKE_CURRENT_BINARY_DIR}")
target_compile_options(moe_consumer PRIVATE -Wall -Wextra -Werror)
target_link_libraries(moe_consumer PRIVATE moe::native)

# The README's Quickstart snippet, extracted by cmake/moeConsumerTest.cmake, built the same way.
if(MOE_README_SNIPPET)
  add_executable(readme_quickstart "${MOE_README_SNIPPET}")
  target_compile_options(readme_quickstart PRIVATE -Wall -Wextra -Werror)
  target_link_libraries(readme_quickstart PRIVATE moe::native)
endif()
