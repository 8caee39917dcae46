# expect: add_microvm_test\(t\): COMMAND "/no/such/test-binary" is neither a target nor an executable file
add_microvm_test(NAME t COMMAND /no/such/test-binary)
