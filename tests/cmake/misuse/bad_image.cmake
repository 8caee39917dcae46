# expect: add_microvm_test\(t\): IMAGE "ubuntu 24.04" is not an image reference
add_microvm_test(NAME t COMMAND sh IMAGE "ubuntu 24.04")
