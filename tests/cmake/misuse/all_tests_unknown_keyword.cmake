# expect: kiln_run_all_tests: unknown keyword: MEMROY
kiln_run_all_tests(MEMROY 512)
