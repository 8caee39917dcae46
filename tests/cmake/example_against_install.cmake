# Install kiln into a fresh prefix, build examples/gtest_demo against it from a
# separate build directory (find_package(Kiln) only: no add_subdirectory), run its
# ctest, and check the outcome: every test passes, the hanging one by timing out,
# --output-junit works; then again from a cold cache with ctest -j4: one bake.
#   cmake -D KILN_BUILD_DIR=... -D EXAMPLE_DIR=... -D WORK_DIR=... -D GENERATOR=... -P example_against_install.cmake
cmake_minimum_required(VERSION 3.25)

include("${CMAKE_CURRENT_LIST_DIR}/install_and_build_example.cmake")

# KILN_CACHE_DIR comes from this test's environment: the shared, already baked test cache.
run("the example's ctest" "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -j2 --output-on-failure
    --output-junit "${WORK_DIR}/junit.xml")
message(STATUS "example ctest:\n${out}")
set(expected
  wordcount.CountWords.EmptyTextHasNoWords wordcount.CountWords.SingleWord
  wordcount.CountWords.SurroundingSpaceIsIgnored wordcount.CountWords.TabsAndNewlinesSeparateWords
  wordcount.CountWords.ReadsAStream data.DataFile.IsPlacedInTheGuest data.DataFile.HasNineWords
  system.System.WritesToEtc system.System.WritesToRoot system.System.StartsClean system.System.LeavesAReport
  system.previous_writes_are_gone hang.times_out ${bake_test})
list(LENGTH expected n)
foreach(t IN LISTS expected)
  string(REPLACE "." "\\." re "${t}")
  if(NOT out MATCHES "Test +#[0-9]+: ${re} \\.+ +Passed")
    message(FATAL_ERROR "${t} did not pass")
  endif()
endforeach()
if(NOT out MATCHES "100% tests passed, 0 tests failed out of ${n}\n")
  message(FATAL_ERROR "expected exactly ${n} tests, all passing")
endif()
file(READ "${WORK_DIR}/junit.xml" junit)
if(NOT junit MATCHES "tests=\"${n}\"")
  message(FATAL_ERROR "--output-junit: expected ${n} tests in ${WORK_DIR}/junit.xml")
endif()
# A VM-level failure ends the test's output with kiln's reason and the guest console's
# tail, so CI shows it in JUnit's system-out (ctest 3.25 writes no failure message).
if(NOT junit MATCHES "hang_test did not finish within 3 s; the VM was killed\n--- guest console \\(tail\\) ---\n")
  message(FATAL_ERROR "--output-junit: the system-out of hang.times_out lacks kiln's reason and the console tail")
endif()

# What a test left in its KILN_OUTPUT_DIR is on the host, in the test's own folder.
file(READ "${build}/kiln-outputs/system.System.LeavesAReport/report.txt" report)
if(NOT report STREQUAL "kept after the VM\n")
  message(FATAL_ERROR "system.System.LeavesAReport's report.txt did not come back: '${report}'")
endif()

# The hanging test passed because kiln's timeout killed its VM, not by luck.
run("ctest -R hang" "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -R "^hang\\.times_out$" -V)
if(NOT out MATCHES "timeout: [^\n]*hang_test did not finish within 3 s; the VM was killed")
  message(FATAL_ERROR "hang.times_out did not time out in kiln:\n${out}")
endif()

# The same failing GoogleTest case with KILN_KEEP_FAILED=1: its VM is kept, and
# kiln shell walks back into it, in the test's working directory (on the shared
# build tree) with the hung test process still running.
run("ctest -R hang, keeping the failed VM" "${CMAKE_COMMAND}" -E env KILN_KEEP_FAILED=1
    "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -R "^hang\\.times_out$" -V)
if(NOT out MATCHES "kept the failed VM: kiln shell ([0-9a-f]+)")
  message(FATAL_ERROR "KILN_KEEP_FAILED=1 did not keep the VM of hang.times_out:\n${out}")
endif()
set(kept_id "${CMAKE_MATCH_1}")
run("kiln shell into hang.times_out" "${prefix}/bin/kiln" shell ${kept_id} -- sh -c "pwd && ls && ps")
if(NOT out MATCHES "^${build}\n" OR NOT out MATCHES "CTestTestfile.cmake" OR NOT out MATCHES "hang_test")
  message(FATAL_ERROR "kiln shell did not show the test's directory and its hung process:\n${out}")
endif()
run("kiln snapshots rm" "${prefix}/bin/kiln" snapshots rm ${kept_id})
message(STATUS "kiln shell ${kept_id}: the hung GoogleTest case was still there")

# ctest -j4 with no golden snapshot and no bake fixture: the first tests start
# together and race to bake; kiln's bake lock must make that exactly one bake.
# The fresh cache reuses the fetched kernel and initramfs (hard links), not the snapshots.
set(cold_cache "${WORK_DIR}/cold-cache")
file(MAKE_DIRECTORY "${cold_cache}")
foreach(dir host kernels initramfs)
  if(EXISTS "$ENV{KILN_CACHE_DIR}/${dir}")
    run("seeding the cold cache" cp -al "$ENV{KILN_CACHE_DIR}/${dir}" "${cold_cache}/")
  endif()
endforeach()
run("reconfiguring the example without the bake fixture" "${CMAKE_COMMAND}" "${build}" -DKILN_BAKE_FIXTURE=OFF)
run("ctest -j4 on a cold cache" "${CMAKE_COMMAND}" -E env "KILN_CACHE_DIR=${cold_cache}"
    "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -j4 -E "^hang" --output-on-failure)
if(out MATCHES "kiln\\.bake")
  message(FATAL_ERROR "KILN_BAKE_FIXTURE=OFF still added a bake test:\n${out}")
endif()
file(GLOB snapshots LIST_DIRECTORIES true "${cold_cache}/snapshots/*")
list(FILTER snapshots EXCLUDE REGEX "/\\.[^/]*$|\\.lock$|\\.tmp")
# Payload layers (one per test executable) sit beside the golden: count goldens only.
set(goldens "")
foreach(dir IN LISTS snapshots)
  file(READ "${dir}/metadata.json" meta)
  if(NOT meta MATCHES "\"layer\": *{")
    list(APPEND goldens "${dir}")
  endif()
endforeach()
set(snapshots "${goldens}")
list(LENGTH snapshots baked)
if(NOT baked EQUAL 1)
  message(FATAL_ERROR "ctest -j4 on a cold cache baked ${baked} snapshots, expected 1: ${snapshots}")
endif()
message(STATUS "ctest -j4 on a cold cache: one bake, all tests passed")
file(REMOVE_RECURSE "${cold_cache}")  # a whole snapshot: do not keep it in the build tree
