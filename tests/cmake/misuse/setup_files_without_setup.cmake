# expect: add_microvm_test\(t\): SETUP_FILES needs SETUP
add_microvm_test(NAME t COMMAND sh SETUP_FILES ${CMAKE_CURRENT_LIST_FILE})
