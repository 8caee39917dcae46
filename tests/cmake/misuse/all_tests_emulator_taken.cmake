# expect: kiln_run_all_tests: CMAKE_CROSSCOMPILING_EMULATOR is already set \("/usr/bin/valgrind"\): kiln would replace it
set(CMAKE_CROSSCOMPILING_EMULATOR /usr/bin/valgrind)
kiln_run_all_tests()
