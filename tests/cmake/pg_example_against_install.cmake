# Install kiln into a fresh prefix, push the PostgreSQL test image to a loopback
# registry (scripts/test-registry, Debian's docker-registry), build examples/pg_demo
# against kiln with IMAGE <that registry>/kiln-test/pg:15, and run its ctest: every
# case passes in its own VM restored from one fixture snapshot in which the image's
# Postgres runs, and no case sees another's writes.
#   cmake -D KILN_BUILD_DIR=... -D EXAMPLE_DIR=... -D WORK_DIR=... -D GENERATOR=...
#         -D SOURCE_DIR=<kiln source> -D IMAGES=<build-test-images output> -P pg_example_against_install.cmake
cmake_minimum_required(VERSION 3.25)

# The registry stops when this cmake process exits (test-registry watches its parent).
execute_process(COMMAND "${SOURCE_DIR}/scripts/test-registry" RESULT_VARIABLE rc OUTPUT_VARIABLE reg ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "scripts/test-registry failed (${rc}): ${err}")
endif()
string(REGEX MATCH "ADDR=([^\n]+)" _ "${reg}")
set(addr "${CMAKE_MATCH_1}")
string(REGEX MATCH "DIR=([^\n]+)" _ "${reg}")
set(registry_dir "${CMAKE_MATCH_1}")
execute_process(COMMAND skopeo copy --quiet --dest-tls-verify=false "oci:${IMAGES}/pg:15"
                        "docker://${addr}/kiln-test/pg:15" RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pushing the test image failed (${rc}): ${err}")
endif()
set(image "${addr}/kiln-test/pg:15")
set(ENV{KILN_INSECURE_REGISTRIES} "${addr}")

set(EXAMPLE_CONFIGURE_ARGS "-DPG_IMAGE=${image}")
include("${CMAKE_CURRENT_LIST_DIR}/install_and_build_example.cmake")

string(SHA256 image_id "${image}")
string(SUBSTRING "${image_id}" 0 12 image_id)
string(REGEX REPLACE "[^A-Za-z0-9_.-]+" "_" image_name "${image}")
string(REPLACE "256M" "384M" pg_bake "${bake_test}")
set(expected
  pg.Schema.TheSetupsRowIsThere pg.Schema.TheServerIsTheImagesPostgres15
  pg.Isolation.WriterA pg.Isolation.WriterB pg.Isolation.AReaderSeesNoTestsWrites
  pg.psql_is_the_images "${pg_bake}.${image_name}.${image_id}")
list(LENGTH expected n)
run("the example's ctest" "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" -j2 --output-on-failure)
message(STATUS "pg_demo ctest:\n${out}")
foreach(t IN LISTS expected)
  string(REGEX REPLACE "([.+])" "\\\\\\1" re "${t}")
  if(NOT out MATCHES "Test +#[0-9]+: ${re} \\.+ +Passed")
    message(FATAL_ERROR "${t} did not pass")
  endif()
endforeach()
if(NOT out MATCHES "100% tests passed, 0 tests failed out of ${n}\n")
  message(FATAL_ERROR "expected exactly ${n} tests, all passing")
endif()
execute_process(COMMAND "${SOURCE_DIR}/scripts/test-registry" --stop "${registry_dir}")
message(STATUS "pg_demo: all ${n} tests passed against ${image}")
