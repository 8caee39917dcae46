# kiln's whole-project switch on a project that knows nothing of kiln
# (tests/cmake/plain_project): it passes with plain ctest on the host; configured
# with -DCMAKE_PROJECT_TOP_LEVEL_INCLUDES=<prefix>/lib/cmake/Kiln/KilnAllTests.cmake,
# its build boots no VM (gtest_discover_tests lists on the host), ctest -N shows one
# test per GoogleTest case, and every test of a built executable runs in its own
# microVM while the other tests stay on the host; the tests read their data files
# from the source tree and a configured file from the build tree, and both trees are
# byte-identical afterwards though the tests wrote into them (in their VMs).
#   cmake -D KILN_BUILD_DIR=... -D EXAMPLE_DIR=... -D WORK_DIR=... -D GENERATOR=... -P all_tests_against_install.cmake
cmake_minimum_required(VERSION 3.25)

set(expected_tests cases.Cases.First cases.Cases.Second cases.Files.ReadsTheDataFileRelativeToItsWorkingDirectory
    cases.Isolation.FirstWriter cases.Isolation.SecondWriter where_am_i reads_trees script_test target_file_test
    nested_test)
list(LENGTH expected_tests n_tests)

function(expect_output what regex)
  if(NOT out MATCHES "${regex}")
    message(FATAL_ERROR "${what}: expected /${regex}/ in:\n${out}")
  endif()
endfunction()

# Every entry of a tree (path, type and mode, link target) and every file's sha256,
# leaving out ctest's own Testing/ directory.
function(tree_listing out dir)
  execute_process(COMMAND sh -c [[cd "$0" && find . -path ./Testing -prune -o -printf '%p %M %l\n' | sort &&
                                  find . -path ./Testing -prune -o -type f -print0 | sort -z | xargs -0 sha256sum]] "${dir}"
                  OUTPUT_VARIABLE listing RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "cannot list ${dir}")
  endif()
  set(${out} "${listing}" PARENT_SCOPE)
endfunction()

# Under the switch. The build must not need a VM: with a cache kiln cannot create,
# any `kiln run` that got past the host listing fails, and the build with it.
set(root "${WORK_DIR}")
set(EXAMPLE_CONFIGURE_ARGS "-DCMAKE_PROJECT_TOP_LEVEL_INCLUDES=${root}/prefix/lib/cmake/Kiln/KilnAllTests.cmake")
set(EXAMPLE_BUILD_ENV "KILN_CACHE_DIR=/proc/kiln-no-cache-at-build-time")
include("${CMAKE_CURRENT_LIST_DIR}/install_and_build_example.cmake")  # defines run(), sets build
expect_output("the build's note" "kiln: 8 tests run in microVMs, 2 stay on the host \\(script_test, target_file_test\\)")
expect_output("the build's note" "kiln: target_file_test runs a built executable on the host")
set(out "${configure_out}")
expect_output("configure" "kiln: the tests of 4 executable targets run in microVMs \\(CROSSCOMPILING_EMULATOR: [^ ]*/bin/kiln run --list-tests-on-host")
expect_output("configure" "COMMAND \\$<TARGET_FILE:x> gets no launcher")

# The same project with plain ctest, on the host: everything runs there and passes.
set(plain "${root}/plain")
run("configuring the project without kiln" "${CMAKE_COMMAND}" -S "${EXAMPLE_DIR}" -B "${plain}" -G "${GENERATOR}")
run("building it" "${CMAKE_COMMAND}" --build "${plain}")
run("its plain ctest" "${CMAKE_CTEST_COMMAND}" --test-dir "${plain}" -V)
foreach(t IN ITEMS where_am_i nested_tool Cases.First Cases.Second Isolation.FirstWriter)
  expect_output("plain ctest" "${t}: on the host")
endforeach()
expect_output("plain ctest" "100% tests passed, 0 tests failed out of ${n_tests}")

run("ctest -N" "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -N)
foreach(t IN LISTS expected_tests)
  string(REPLACE "." "\\." re "${t}")
  expect_output("ctest -N" "Test +#[0-9]+: ${re}\n")
endforeach()
expect_output("ctest -N" "Total Tests: ${n_tests}\n")

# KILN_CACHE_DIR comes from this test's environment: the shared, already baked test cache.
tree_listing(source_before "${EXAMPLE_DIR}")
tree_listing(build_before "${build}")
run("ctest under the switch" "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -V -j2)
foreach(t IN ITEMS where_am_i nested_tool Cases.First Cases.Second Isolation.FirstWriter Isolation.SecondWriter
               Files.ReadsTheDataFileRelativeToItsWorkingDirectory)
  expect_output("ctest under the switch" "${t}: in a microVM")
endforeach()
expect_output("ctest under the switch" "reads_trees: in a microVM: read data/words.txt \\(4 words\\) and [^ ]*/settings.conf")
tree_listing(source_after "${EXAMPLE_DIR}")
tree_listing(build_after "${build}")
if(NOT source_after STREQUAL source_before)
  message(FATAL_ERROR "the source tree changed under the switch:\nbefore:\n${source_before}\nafter:\n${source_after}")
endif()
if(NOT build_after STREQUAL build_before)
  message(FATAL_ERROR "the build tree changed under the switch:\nbefore:\n${build_before}\nafter:\n${build_after}")
endif()
expect_output("ctest under the switch" "100% tests passed, 0 tests failed out of ${n_tests}")
message(STATUS "plain project under the switch:\n${out}")

# The tests that are not a built executable's run stayed on the host.
run("ctest -R script_test" "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -R "^script_test$" -V)
expect_output("script_test" "script_test: on the host")
run("ctest -R target_file_test" "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -R "^target_file_test$" -V)
expect_output("target_file_test" "where_am_i: on the host")
