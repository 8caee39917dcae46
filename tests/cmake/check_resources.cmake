# `kiln resources` prints a CTest resource spec (version 1.0) that ctest accepts.
#   cmake -D KILN=<kiln binary> -D WORK_DIR=... -P check_resources.cmake
cmake_minimum_required(VERSION 3.25)

foreach(memory 256 65536)
  execute_process(COMMAND "${KILN}" resources --memory ${memory}
                  RESULT_VARIABLE result OUTPUT_VARIABLE spec ERROR_VARIABLE err)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "kiln resources --memory ${memory} failed (${result}): ${err}")
  endif()
  string(JSON major GET "${spec}" version major)
  string(JSON minor GET "${spec}" version minor)
  string(JSON slots GET "${spec}" local 0 microvm_slots 0 slots)
  string(JSON id GET "${spec}" local 0 microvm_slots 0 id)
  if(NOT major EQUAL 1 OR NOT minor EQUAL 0 OR NOT id STREQUAL "0" OR NOT slots GREATER_EQUAL 1)
    message(FATAL_ERROR "kiln resources --memory ${memory}: unexpected spec:\n${spec}")
  endif()
  message(STATUS "--memory ${memory}: ${slots} microvm_slots")
endforeach()

# ctest itself accepts the spec and schedules a test that asks for a slot.
file(REMOVE_RECURSE "${WORK_DIR}")
file(WRITE "${WORK_DIR}/spec.json" "${spec}")
file(WRITE "${WORK_DIR}/CTestTestfile.cmake" "
add_test(slot \"${CMAKE_COMMAND}\" -E echo got-a-slot)
set_tests_properties(slot PROPERTIES RESOURCE_GROUPS microvm_slots:1 PASS_REGULAR_EXPRESSION got-a-slot)
")
execute_process(COMMAND "${CMAKE_CTEST_COMMAND}" --resource-spec-file "${WORK_DIR}/spec.json"
                WORKING_DIRECTORY "${WORK_DIR}" RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "ctest rejected the spec or the test (${result}):\n${out}")
endif()
