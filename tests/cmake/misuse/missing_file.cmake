# expect: add_microvm_test\(t\): FILES path "[^"]*/no-such-data.txt" does not exist
add_microvm_test(NAME t COMMAND sh -c true FILES no-such-data.txt)
