# expect: OK
add_microvm_test(NAME hermetic COMMAND /bin/true SHARE NONE)
add_microvm_test(NAME more COMMAND /bin/true SHARE /tmp ${CMAKE_CURRENT_SOURCE_DIR})
# ctest-file: add_test\(\[=\[hermetic\]=\] "[^"]*" "run" "--timeout"
# ctest-file: add_test\(\[=\[more\]=\] "[^"]*" "run" "--share" "/tmp" "--share" "[^"]*/share_valid/src" "--timeout"
