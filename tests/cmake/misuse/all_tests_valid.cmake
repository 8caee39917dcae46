# expect: OK
kiln_run_all_tests(MEMORY 512 CPUS 2 TIMEOUT 60 ENGINE qemu SHARE /tmp)
# An imported tool (as find_package(Python3) defines one) is not built by the
# project: its test is a script test and stays on the host.
add_executable(interpreter IMPORTED)
set_target_properties(interpreter PROPERTIES IMPORTED_LOCATION /bin/sh)
add_test(NAME script COMMAND interpreter -c "exit 0")
# ctest-file: add_test\(\[=\[script\]=\] "/bin/sh" "-c" "exit 0"\)
set(expected /usr/bin/kiln-not-needed-at-configure run --list-tests-on-host --share /tmp --memory 512 --cpus 2 --timeout 60
    --engine qemu --)
if(NOT CMAKE_CROSSCOMPILING_EMULATOR STREQUAL "${expected}")
  message(FATAL_ERROR "the launcher is \"${CMAKE_CROSSCOMPILING_EMULATOR}\", expected \"${expected}\"")
endif()
