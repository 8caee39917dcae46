# expect: kiln_run_all_tests: SHARE directory "/nonexistent/kiln-tree" does not exist
kiln_run_all_tests(SHARE /nonexistent/kiln-tree)
