# expect: OK
add_microvm_test(NAME seeded COMMAND sh -c "exit 0" SETUP "redis-server --daemonize yes && redis-cli SET k v"
                 SETUP_FILES ${CMAKE_CURRENT_LIST_FILE} ENVIRONMENT A=1)
# ctest-file: "run" "--env" "A=1" "--share" "[^"]*/src" "--share" "[^"]*/build" "--setup" "redis-server --daemonize yes && redis-cli SET k v" "--setup-file" "[^"]*/misuse/valid_setup.cmake" "--timeout"
