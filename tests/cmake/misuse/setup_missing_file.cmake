# expect: kiln_discover_tests\(tool\): SETUP_FILES path "[^"]*/no-such-seed-file" does not exist
add_executable(tool IMPORTED)
set_target_properties(tool PROPERTIES IMPORTED_LOCATION /bin/true)
kiln_discover_tests(tool SETUP "redis-server --daemonize yes" SETUP_FILES no-such-seed-file)
