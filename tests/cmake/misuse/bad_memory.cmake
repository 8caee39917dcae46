# expect: add_microvm_test\(t\): MEMORY "lots" must be an integer from 64 to 65536
add_microvm_test(NAME t COMMAND sh MEMORY lots)
