# expect: add_microvm_test\(t\): unknown keyword: MEMROY
add_microvm_test(NAME t MEMROY 512 COMMAND sh -c true)
