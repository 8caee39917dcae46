# Install kiln, build examples/coverage_demo (gcc --coverage) against it, and run its
# GoogleTest cases on the host, then each in its own microVM: gcovr must report the
# same coverage, line by line and count by count, after either (issue: coverage under
# kiln is what it is without it). The VM cases run two at a time, so the merge of
# their counters into the same .gcda files is exercised as ctest -j does it.
#   cmake -D KILN_BUILD_DIR=... -D EXAMPLE_DIR=... -D WORK_DIR=... -D GENERATOR=... -P coverage_example_against_install.cmake
cmake_minimum_required(VERSION 3.25)

include("${CMAKE_CURRENT_LIST_DIR}/install_and_build_example.cmake")

find_program(GCOVR gcovr REQUIRED)

# gcovr's JSON report of the build tree's .gcda files: per file, per line, the count.
function(coverage_report label out_var)
  file(GLOB_RECURSE old "${build}/*.gcda")
  if(old)
    file(REMOVE ${old})
  endif()
  run("ctest -L ${label}" "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -L "^${label}$" -j2 --output-on-failure)
  # 3 cases (and, for microvm, the bake fixture).
  if(NOT out MATCHES "100% tests passed, 0 tests failed out of [34]\n")
    message(FATAL_ERROR "expected the 3 ${label} cases to pass:\n${out}")
  endif()
  run("gcovr after ctest -L ${label}" "${GCOVR}" --root "${EXAMPLE_DIR}" --json-pretty
      --output "${WORK_DIR}/${label}.json" "${build}")
  run("gcovr summary after ctest -L ${label}" "${GCOVR}" --root "${EXAMPLE_DIR}" "${build}")
  message(STATUS "gcovr after ctest -L ${label}:\n${out}")
  file(READ "${WORK_DIR}/${label}.json" json)
  set(${out_var} "${json}" PARENT_SCOPE)
endfunction()

coverage_report(host host_json)
coverage_report(microvm vm_json)

string(JSON files LENGTH "${host_json}" files)
if(files EQUAL 0)
  message(FATAL_ERROR "gcovr found no covered file after the host run: the example is not built with --coverage")
endif()
string(JSON covered GET "${host_json}" files 0 file)
if(NOT host_json STREQUAL vm_json)
  message(FATAL_ERROR "gcovr reports different coverage after the microVM runs than after the host runs; see "
                      "${WORK_DIR}/host.json and ${WORK_DIR}/microvm.json")
endif()
message(STATUS "coverage under kiln: gcovr's report is identical to the host run's (${files} files, first ${covered})")
