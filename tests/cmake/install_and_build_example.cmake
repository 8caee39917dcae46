# Shared by the *_against_install.cmake scripts: run(), then install kiln into a
# fresh prefix under WORK_DIR and configure + build EXAMPLE_DIR against it with
# find_package(Kiln) only. Sets `prefix`, `build` and `bake_test` (the name of the
# example's bake fixture test).
#
# EXAMPLE_CONFIGURE_ARGS (a list) is added to the configure command line, and the
# build runs with the variables of EXAMPLE_BUILD_ENV (a list of K=V) set.
#
# The examples use the engine the VM suite targets: KILN_TEST_ENGINE (kvm in the
# nested-KVM lab) becomes the example's KILN_DEFAULT_ENGINE; unset means kiln's own
# default (auto).

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${what} failed (${result}):\n  ${ARGN}\n${out}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
file(REMOVE_RECURSE "${WORK_DIR}")

run("installing kiln" "${CMAKE_COMMAND}" --install "${KILN_BUILD_DIR}" --prefix "${prefix}")
foreach(f bin/kiln libexec/kiln/kiln-agent lib/cmake/Kiln/KilnConfig.cmake
          lib/cmake/Kiln/KilnConfigVersion.cmake lib/cmake/Kiln/Kiln.cmake lib/cmake/Kiln/KilnDiscoverTests.cmake)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()

set(engine_args "")
set(bake_test kiln.bake.256M.1cpu)
if(NOT "$ENV{KILN_TEST_ENGINE}" STREQUAL "")
  set(engine_args "-DKILN_DEFAULT_ENGINE=$ENV{KILN_TEST_ENGINE}")
  string(APPEND bake_test ".$ENV{KILN_TEST_ENGINE}")
endif()
run("configuring the example" "${CMAKE_COMMAND}" -S "${EXAMPLE_DIR}" -B "${build}" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${prefix}" ${engine_args} ${EXAMPLE_CONFIGURE_ARGS})
set(configure_out "${out}")
run("building the example" "${CMAKE_COMMAND}" -E env ${EXAMPLE_BUILD_ENV} "${CMAKE_COMMAND}" --build "${build}")
