# expect: add_microvm_test\(t\): COMMAND "build/my_test" is neither a target, an absolute path
add_microvm_test(NAME t COMMAND build/my_test)
