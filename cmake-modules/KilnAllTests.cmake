# The whole-project switch (docs/cmake.md): run an unmodified project's tests in
# microVMs by naming this file at its first configure,
#
#   cmake -DCMAKE_PROJECT_TOP_LEVEL_INCLUDES=<prefix>/lib/cmake/Kiln/KilnAllTests.cmake ...
#
# CMake includes it in the project's first project() call, before any target
# exists, so every executable target gets kiln as its test launcher: each add_test()
# whose COMMAND is an executable target, and each case gtest_discover_tests() finds,
# runs in its own fresh microVM. -DKILN_ALL_TESTS=OFF turns it off again.
include_guard(GLOBAL)

if(DEFINED KILN_ALL_TESTS AND NOT KILN_ALL_TESTS)
  message(STATUS "kiln: KILN_ALL_TESTS is OFF: tests run on the host")
  return()
endif()
find_package(Kiln REQUIRED CONFIG PATHS "${CMAKE_CURRENT_LIST_DIR}" NO_DEFAULT_PATH)
kiln_run_all_tests()
