# expect: OK
add_microvm_test(NAME pg COMMAND psql --version IMAGE 127.0.0.1:5000/kiln-test/pg:15 USER postgres)
# ctest-file: "run" "--share" "[^"]*/valid_image/src" "--share" "[^"]*/valid_image/build" "--timeout" "[0-9]+" "--memory" "256" "--cpus" "1" "--image" "127.0.0.1:5000/kiln-test/pg:15" "--user" "postgres" "--output-dir" "[^"]*/build/kiln-outputs/pg" "--test-name" "pg" "--" "psql" "--version"
# ctest-file: FIXTURES_REQUIRED "kiln.bake.256M.1cpu.127.0.0.1_5000_kiln-test_pg_15.[0-9a-f]+"
# ctest-file: kiln.bake.256M.1cpu.127.0.0.1_5000_kiln-test_pg_15.[0-9a-f]+.=. "[^"]*" "bake" "--memory" "256" "--cpus" "1" "--image" "127.0.0.1:5000/kiln-test/pg:15" "--pull" "always"
