# expect: add_microvm_test\(t\): SHARE NONE cannot be combined with directories
add_microvm_test(NAME t COMMAND /bin/true SHARE NONE /tmp)
