# expect: OK
add_microvm_test(NAME on_kvm COMMAND /bin/true ENGINE kvm)
# ctest-file: "run" "--share" "[^"]*/src" "--share" "[^"]*/build" "--timeout" "[0-9.]+" "--memory" "256" "--cpus" "1" "--engine" "kvm" "--output-dir" "[^"]*/build/kiln-outputs/on_kvm" "--test-name" "on_kvm" "--" "/bin/true"
# ctest-file: FIXTURES_REQUIRED "kiln.bake.256M.1cpu.kvm"
