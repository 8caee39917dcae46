# Install kiln into a fresh prefix, build examples/fixture_demo against it
# (find_package(Kiln) only), and run its ctest twice: every test passes — each finds
# the Redis server the fixture started and seeded, and none sees another's writes —
# and the store holds exactly one fixture layer for it (the setup ran once).
#   cmake -D KILN_BUILD_DIR=... -D EXAMPLE_DIR=... -D WORK_DIR=... -D GENERATOR=... -P fixture_example_against_install.cmake
cmake_minimum_required(VERSION 3.25)

include("${CMAKE_CURRENT_LIST_DIR}/install_and_build_example.cmake")

set(expected
  redis.Seeded.GreetingIsThere redis.Seeded.ListIsThere
  redis.Isolation.FirstIncrementSeesTheSeed redis.Isolation.SecondIncrementSeesTheSeedToo
  redis.Isolation.WriterA redis.Isolation.WriterB redis.cli_reads_the_seed ${bake_test})
list(LENGTH expected n)
foreach(round 1 2)
  # KILN_CACHE_DIR comes from this test's environment: the shared, already baked test cache.
  run("the example's ctest (round ${round})" "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -j2 --output-on-failure)
  message(STATUS "example ctest, round ${round}:\n${out}")
  foreach(t IN LISTS expected)
    string(REPLACE "." "\\." re "${t}")
    if(NOT out MATCHES "Test +#[0-9]+: ${re} \\.+ +Passed")
      message(FATAL_ERROR "${t} did not pass in round ${round}")
    endif()
  endforeach()
  if(NOT out MATCHES "100% tests passed, 0 tests failed out of ${n}\n")
    message(FATAL_ERROR "expected exactly ${n} tests, all passing")
  endif()
endforeach()

# One fixture for seed.sh however many tests and rounds used it — per engine and per
# golden it was built on: the shared test cache may also hold the one another engine's
# suite built (the nested-KVM lab sees the host's cache), and a developer's cache the
# ones of earlier goldens (a rebuilt agent is a new golden).
file(GLOB metas "$ENV{KILN_CACHE_DIR}/snapshots/*/metadata.json")
set(keys "")
foreach(meta IN LISTS metas)
  file(READ "${meta}" text)
  if(text MATCHES "\"kind\": \"fixture\"" AND text MATCHES "fixture_demo/seed\\.sh"
     AND text MATCHES "\"engine\": \"([^\"]*)\"")
    set(engine "${CMAKE_MATCH_1}")
    string(REGEX MATCH "\"parent\": \"([^\"]*)\"" parent "${text}")
    list(APPEND keys "${engine} on ${CMAKE_MATCH_1}")
  endif()
endforeach()
if(NOT keys)
  message(FATAL_ERROR "no fixture layer for fixture_demo/seed.sh in $ENV{KILN_CACHE_DIR}")
endif()
set(distinct ${keys})
list(REMOVE_DUPLICATES distinct)
foreach(key IN LISTS distinct)
  set(n 0)
  foreach(k IN LISTS keys)
    if(k STREQUAL key)
      math(EXPR n "${n} + 1")
    endif()
  endforeach()
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "expected one fixture layer for fixture_demo/seed.sh per engine and golden in "
                        "$ENV{KILN_CACHE_DIR}, found ${n} for ${key}")
  endif()
endforeach()
message(STATUS "fixture_demo: all tests passed twice, one fixture layer")
