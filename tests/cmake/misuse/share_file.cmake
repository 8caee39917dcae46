# expect: kiln_discover_tests\(tool\): SHARE "[^"]*/src/CMakeLists.txt" is a file, not a directory \(use FILES for files\)
add_executable(tool IMPORTED)
set_target_properties(tool PROPERTIES IMPORTED_LOCATION /bin/true)
kiln_discover_tests(tool SHARE CMakeLists.txt)
