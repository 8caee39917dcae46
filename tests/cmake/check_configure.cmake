# Configure a throwaway project whose body is CASE_FILE and check the outcome:
# its first line `# expect: <regex>` must match the configure error (or be `OK`),
# and every `# ctest-file: <regex>` line must match the generated CTestTestfile.cmake.
#   cmake -D CASE_FILE=... -D KILN_MODULE=.../Kiln.cmake -D WORK_DIR=... -P check_configure.cmake
cmake_minimum_required(VERSION 3.25)

file(STRINGS "${CASE_FILE}" expect LIMIT_COUNT 1 REGEX "^# expect: ")
string(REGEX REPLACE "^# expect: " "" expect "${expect}")
file(STRINGS "${CASE_FILE}" ctest_checks REGEX "^# ctest-file: ")
get_filename_component(case "${CASE_FILE}" NAME_WE)
set(src "${WORK_DIR}/${case}/src")
set(bin "${WORK_DIR}/${case}/build")
file(REMOVE_RECURSE "${WORK_DIR}/${case}")
file(WRITE "${src}/CMakeLists.txt" "\
cmake_minimum_required(VERSION 3.25)
project(kiln_misuse_${case} NONE)
enable_testing()
set(KILN_EXECUTABLE /usr/bin/kiln-not-needed-at-configure)
include([==[${KILN_MODULE}]==])
include([==[${CASE_FILE}]==])
")
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${src}" -B "${bin}"
                RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
# CMake wraps long messages: compare with the line breaks and indentation folded.
string(REGEX REPLACE "\n *" " " err_flat "${err}")

if(expect STREQUAL "OK")
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${case}: configure should succeed but failed:\n${err}")
  endif()
  file(READ "${bin}/CTestTestfile.cmake" ctest_file)
  foreach(check IN LISTS ctest_checks)
    string(REGEX REPLACE "^# ctest-file: " "" check "${check}")
    if(NOT ctest_file MATCHES "${check}")
      message(FATAL_ERROR "${case}: CTestTestfile.cmake does not match\n  ${check}\n${ctest_file}")
    endif()
  endforeach()
  message(STATUS "${case}: configured; tests as expected")
  return()
endif()
if(result EQUAL 0)
  message(FATAL_ERROR "${case}: configure should fail with /${expect}/ but succeeded")
endif()
if(NOT err_flat MATCHES "${expect}")
  message(FATAL_ERROR "${case}: configure failed, but not with /${expect}/:\n${err}")
endif()
message(STATUS "${case}: configure failed as expected:\n${err}")
