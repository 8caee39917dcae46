# expect: kiln_run_all_tests: MEMORY "16" must be an integer from 64 to 65536
kiln_run_all_tests(MEMORY 16)
