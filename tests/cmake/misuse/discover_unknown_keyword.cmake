# expect: kiln_discover_tests\(tool\): unknown keyword: TEST_PREFX
add_executable(tool IMPORTED)
kiln_discover_tests(tool TEST_PREFX "x.")
