# expect: add_microvm_test\(t\): unknown keyword: TIMOUT
add_microvm_test(NAME t COMMAND sh -c true TIMOUT 5)
