# expect: add_microvm_test\(t\): COMMAND "[^"]*/CMakeLists.txt" is neither a target nor an executable file
add_microvm_test(NAME t COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/CMakeLists.txt)
