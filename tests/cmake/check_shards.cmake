# The fleet recipe of docs/fleet.md on shard_project/: scripts/ctest-shard splits its
# suite into 3 shards and merges their JUnit files.
#   cmake -D SCRIPTS=<kiln>/scripts -D KILN_MODULE=.../Kiln.cmake -D PROJECT_DIR=.../shard_project
#         -D WORK_DIR=... -D GENERATOR=Ninja -P check_shards.cmake
# Checks: two builds (one with GTEST_FILTER in its environment, as a second machine
# might have) list the same tests in the same order, kiln_discover_tests' names as
# GoogleTest registers them; the 3 shards' lists are disjoint but for fixture setups,
# their union is `ctest`'s whole list, and listing a shard twice, or in the other
# build, gives the same list; shards run with -LE microvm merge into one JUnit file
# with the unsharded run's test cases and counts (a failing, a skipped and a disabled
# test among them); a shard past the end runs nothing; bad input is refused.
cmake_minimum_required(VERSION 3.25)
set(shard "${SCRIPTS}/ctest-shard")
set(N 3)

# run(<out> COMMAND...): run it; fail unless it exits 0; its stdout in <out>.
function(run out)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " cmd)
    message(FATAL_ERROR "`${cmd}` failed (${rc}):\n${stdout}${stderr}")
  endif()
  set(${out} "${stdout}" PARENT_SCOPE)
endfunction()

# expect_exit(<code> <stderr regex> COMMAND...): it exits <code> and says <regex> on stderr.
function(expect_exit code regex)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  list(JOIN ARGN " " cmd)
  if(NOT rc EQUAL code OR NOT stderr MATCHES "${regex}")
    message(FATAL_ERROR "`${cmd}`: expected exit ${code} and /${regex}/, got ${rc}:\n${stdout}${stderr}")
  endif()
endfunction()

# expect_equal(<what> <actual list> <expected list>)
function(expect_equal what actual expected)
  if(NOT actual STREQUAL expected)
    string(REPLACE ";" "\n  " actual "${actual}")
    string(REPLACE ";" "\n  " expected "${expected}")
    message(FATAL_ERROR "${what}: got\n  ${actual}\nexpected\n  ${expected}")
  endif()
endfunction()

# ctest_names(<out> BUILD ARGS...): the names `ctest -N` lists, in its order.
function(ctest_names out build)
  run(json ctest --test-dir "${build}" --show-only=json-v1 ${ARGN})
  string(JSON n LENGTH "${json}" tests)
  set(names "")
  if(n GREATER 0)
    math(EXPR last "${n} - 1")
    foreach(i RANGE ${last})
      string(JSON name GET "${json}" tests ${i} name)
      list(APPEND names "${name}")
    endforeach()
  endif()
  set(${out} "${names}" PARENT_SCOPE)
endfunction()

# shard_list(<out> BUILD INDEX ARGS...): the names `ctest-shard --list` prints.
function(shard_list out build index)
  run(stdout "${shard}" --list "${build}" ${index} ${N} ${ARGN})
  string(REGEX REPLACE "\n$" "" stdout "${stdout}")
  string(REPLACE "\n" ";" stdout "${stdout}")
  set(${out} "${stdout}" PARENT_SCOPE)
endfunction()

# junit(<prefix> FILE): <prefix>_tests/_failures/_skipped/_disabled of its <testsuite>,
# <prefix>_names its test cases' names in file order.
function(junit prefix file)
  file(READ "${file}" xml)
  string(REGEX MATCH "<testsuite [^>]*>" suite "${xml}")
  foreach(attr tests failures skipped disabled)
    if(NOT suite MATCHES "[ \t\n]${attr}=\"([0-9]+)\"")
      message(FATAL_ERROR "${file}: no ${attr} count in ${suite}")
    endif()
    set(${prefix}_${attr} ${CMAKE_MATCH_1} PARENT_SCOPE)
  endforeach()
  string(REGEX MATCHALL "<testcase name=\"[^\"]*\"" cases "${xml}")
  list(TRANSFORM cases REPLACE "<testcase name=\"([^\"]*)\"" "\\1")
  set(${prefix}_names "${cases}" PARENT_SCOPE)
endfunction()

# --- two builds, as on two machines ------------------------------------------------
file(REMOVE_RECURSE "${WORK_DIR}")
foreach(b a b)
  if(b STREQUAL "b")
    set(ENV{GTEST_FILTER} "Alpha.*")  # a builder's environment must not change the list
  endif()
  run(out "${CMAKE_COMMAND}" -S "${PROJECT_DIR}" -B "${WORK_DIR}/${b}" -G "${GENERATOR}"
          -D "KILN_MODULE=${KILN_MODULE}")
  run(out "${CMAKE_COMMAND}" --build "${WORK_DIR}/${b}")
endforeach()
set(A "${WORK_DIR}/a")
ctest_names(all_a "${A}")
ctest_names(all_b "${WORK_DIR}/b")
expect_equal("the test list of build b (built with GTEST_FILTER=Alpha.*)" "${all_b}" "${all_a}")
set(ENV{GTEST_FILTER} "Zeta.*")  # nor a shard's environment
ctest_names(all_b "${WORK_DIR}/b")
expect_equal("the test list of build b under GTEST_FILTER=Zeta.*" "${all_b}" "${all_a}")
unset(ENV{GTEST_FILTER})
# kiln_discover_tests: GoogleTest's registration order and names; then add_test's order,
# the bake fixtures kiln adds at the end of the top directory, then the subdirectory.
expect_equal("the test list" "${all_a}"
  "Zeta.Last;Alpha.First;Alpha.Second;Alpha.DISABLED_Off;Small/Sizes.Fit/0;Small/Sizes.Fit/1;Small/Sizes.Fit/2;\
host.setup;host.pass1;host.pass2;host.pass3;host.pass4;host.pass5;host.pass6;host.fails;host.skips;host.disabled;\
host.needs_setup;vm.echo;vm.big;kiln.bake.256M.1cpu;kiln.bake.512M.1cpu;more.pass1;more.pass2")

# --- the split of the whole list ----------------------------------------------------
set(union "")
set(setups "host.setup;kiln.bake.256M.1cpu;kiln.bake.512M.1cpu")
foreach(i RANGE 1 ${N})
  shard_list(s${i} "${A}" ${i})
  shard_list(again "${A}" ${i})
  expect_equal("shard ${i} listed twice" "${again}" "${s${i}}")
  shard_list(other "${WORK_DIR}/b" ${i})
  expect_equal("shard ${i} of build b" "${other}" "${s${i}}")
  foreach(name IN LISTS s${i})
    if(name IN_LIST union AND NOT name IN_LIST setups)
      message(FATAL_ERROR "${name} is in shard ${i} and in an earlier one: the shards overlap")
    endif()
  endforeach()
  list(APPEND union ${s${i}})
endforeach()
list(REMOVE_DUPLICATES union)
set(expected_union "${all_a}")
list(SORT union)
list(SORT expected_union)
expect_equal("the union of the shards" "${union}" "${expected_union}")
# Round robin over ctest's numbering (1-based), with the fixture setups a shard needs.
expect_equal("shard 1" "${s1}" "Zeta.Last;Alpha.DISABLED_Off;Small/Sizes.Fit/2;host.pass2;host.pass5;\
host.skips;vm.echo;kiln.bake.256M.1cpu;kiln.bake.512M.1cpu")

# --- run the host tests as 3 shards, merge, compare with one unsharded run -----------
# -LE microvm: ctest numbers the tests left after the filter (verified: ctest 3.25).
set(J "${WORK_DIR}/junit")
set(files "")
foreach(i RANGE 1 ${N})
  execute_process(COMMAND "${shard}" --junit "${J}/shard-${i}.xml" "${A}" ${i} ${N} -LE microvm
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  junit(shard${i} "${J}/shard-${i}.xml")
  # A shard fails exactly when it holds the failing test.
  if(("host.fails" IN_LIST shard${i}_names) EQUAL (rc EQUAL 0))
    message(FATAL_ERROR "shard ${i} exited ${rc} with tests ${shard${i}_names}:\n${out}")
  endif()
  list(APPEND files "${J}/shard-${i}.xml")
endforeach()
expect_equal("shard 2's tests" "${shard2_names}" "host.setup;host.pass1;host.pass4;host.fails;host.needs_setup")
run(out "${shard}" --merge "${J}/merged.xml" ${files})
execute_process(COMMAND ctest --test-dir "${A}" -LE microvm --output-junit "${J}/all.xml" OUTPUT_QUIET ERROR_QUIET)
junit(merged "${J}/merged.xml")
junit(all "${J}/all.xml")
set(merged_set "${merged_names}")
list(REMOVE_DUPLICATES merged_set)
list(SORT merged_set)
set(all_set "${all_names}")
list(SORT all_set)
expect_equal("the merged JUnit's test cases" "${merged_set}" "${all_set}")
# host.setup ran twice (shards 1 and 2); everything else once, as in the unsharded run.
math(EXPR expected_tests "${all_tests} + 1")
expect_equal("merged counts (tests failures skipped disabled)"
  "${merged_tests};${merged_failures};${merged_skipped};${merged_disabled}"
  "${expected_tests};${all_failures};${all_skipped};${all_disabled}")
expect_equal("unsharded counts (tests failures skipped disabled)"
  "${all_tests};${all_failures};${all_skipped};${all_disabled}" "13;1;1;1")
execute_process(COMMAND "${SCRIPTS}/ctest-report" merged "${J}/merged.xml" OUTPUT_VARIABLE report ERROR_VARIABLE report)
if(NOT report MATCHES "merged: 11 passed, 1 failed, 2 skipped")
  message(FATAL_ERROR "scripts/ctest-report on the merged file:\n${report}")
endif()

# --- a shard past the end of the filtered list runs nothing ---------------------------
shard_list(past "${A}" 3 -L more)
expect_equal("shard 3 of the 2 tests labelled more" "${past}" "")
run(out "${shard}" --junit "${J}/more-3.xml" "${A}" 3 ${N} -L more)
junit(more3 "${J}/more-3.xml")
expect_equal("shard 3 of -L more" "${more3_tests};${more3_names}" "0;")

# --- refusals ---------------------------------------------------------------------------
expect_exit(2 "INDEX 4 is out of range" "${shard}" "${A}" 4 ${N})
expect_exit(2 "INDEX 0 is out of range" "${shard}" "${A}" 0 ${N})
expect_exit(2 "COUNT must be a whole number of shards, 1 or more" "${shard}" "${A}" 1 0)
expect_exit(2 "build directory '[^']*/nowhere' does not exist" "${shard}" "${WORK_DIR}/nowhere" 1 ${N})
expect_exit(2 "no CTestTestfile.cmake" "${shard}" "${J}" 1 ${N})
expect_exit(2 "ctest option -I chooses tests by number" "${shard}" "${A}" 1 ${N} -I 1,3)
list(REMOVE_AT files 1)
expect_exit(1 "shard\\(s\\) 2 of 3 missing" "${shard}" --merge "${J}/bad.xml" ${files})
expect_exit(1 "different splits" "${shard}" --merge "${J}/bad.xml" ${files} "${J}/more-3.xml")
message(STATUS "3 shards: disjoint, complete, reproducible; merged JUnit matches the unsharded run")
