# expect: add_microvm_test\(t\): COMMAND target "lib" is a STATIC_LIBRARY, not an executable
add_library(lib STATIC IMPORTED)
add_microvm_test(NAME t COMMAND lib)
