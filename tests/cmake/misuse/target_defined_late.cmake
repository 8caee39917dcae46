# expect: add_microvm_test\(t\): COMMAND "late" is a target defined after add_microvm_test\(\)
add_microvm_test(NAME t COMMAND late)
add_executable(late IMPORTED)
