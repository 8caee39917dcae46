# expect: OK
add_executable(tool IMPORTED)
set_target_properties(tool PROPERTIES IMPORTED_LOCATION /bin/true)
add_microvm_test(NAME bare COMMAND sh -c "exit 0" MEMORY 512 CPUS 2 TIMEOUT 5 ENVIRONMENT A=1 LABELS x
                 FILES ${CMAKE_CURRENT_LIST_FILE} WORKING_DIRECTORY /tmp ENGINE qemu IMAGE default)
add_microvm_test(NAME abs COMMAND /bin/true $<1:LITERAL_UPPER>)
add_microvm_test(NAME target COMMAND tool OUTPUT_DIR reports/tool)
set_tests_properties(bare PROPERTIES WILL_FAIL TRUE SKIP_RETURN_CODE 77 RESOURCE_LOCK r)
set(KILN_KEEP_FAILED ON)
add_microvm_test(NAME kept COMMAND /bin/false)
set(KILN_KEEP_FAILED OFF)
# ctest-file: "run" "--env" "A=1" "--file" "[^"]*/misuse/valid.cmake" "--share" "[^"]*/valid/src" "--share" "[^"]*/valid/build" "--cwd" "/tmp" "--timeout" "5" "--memory" "512" "--cpus" "2" "--engine" "qemu" "--output-dir" "[^"]*/build/kiln-outputs/bare" "--test-name" "bare" "--" "sh" "-c" "exit 0"
# ctest-file: "/bin/true" "LITERAL_UPPER"
# ctest-file: "--cpus" "1" "--keep-failed" "--output-dir" "[^"]*/build/kiln-outputs/kept" "--test-name" "kept" "--" "/bin/false"
# ctest-file: "--output-dir" "[^"]*/build/reports/tool" "--test-name" "target" "--" "/bin/true"
# ctest-file: FIXTURES_REQUIRED "kiln.bake.512M.2cpu.qemu" LABELS "x.microvm" RESOURCE_LOCK "r" SKIP_RETURN_CODE "77" TIMEOUT "36" WILL_FAIL "TRUE"
