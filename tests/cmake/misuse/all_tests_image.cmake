# expect: OK
kiln_run_all_tests(IMAGE 127.0.0.1:5000/kiln-test/pg:15 USER postgres SHARE NONE)
set(expected /usr/bin/kiln-not-needed-at-configure run --list-tests-on-host --memory 256 --cpus 1
    --image 127.0.0.1:5000/kiln-test/pg:15 --user postgres --)
if(NOT CMAKE_CROSSCOMPILING_EMULATOR STREQUAL "${expected}")
  message(FATAL_ERROR "the launcher is \"${CMAKE_CROSSCOMPILING_EMULATOR}\", expected \"${expected}\"")
endif()
