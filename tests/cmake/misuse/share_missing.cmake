# expect: add_microvm_test\(t\): SHARE directory "[^"]*/src/no-such-dir" does not exist
add_microvm_test(NAME t COMMAND /bin/true SHARE no-such-dir)
