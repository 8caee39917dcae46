# expect: add_microvm_test\(t\): SETUP must be one command string without ';'
add_microvm_test(NAME t COMMAND sh SETUP "redis-server --daemonize yes; redis-cli SET k v")
