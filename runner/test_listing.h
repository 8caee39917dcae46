// A test executable asked only to list its cases runs on the host, not in a VM.
//
// Under the whole-project switch (docs/cmake.md) kiln is the launcher CMake puts in
// front of every test executable, and CMake's gtest_discover_tests() runs that same
// launcher at build time to list the cases. Booting a VM to list them would tie the
// build to a baked golden snapshot (its 5 s discovery timeout fails a cold cache)
// and buys nothing: host and guest run the same binary. Only the listing runs on
// the host; every case then runs in its own microVM.
#pragma once

#include "common/result.h"

#include <string>
#include <vector>

namespace kiln::runner {

/// Whether `argv` (the executable and its arguments) only lists test cases: it
/// contains --gtest_list_tests and every other argument is a GoogleTest flag
/// (--gtest_filter=..., as gtest_discover_tests passes one).
bool is_test_listing(const std::vector<std::string>& argv);

/// Replace kiln with argv[0] on the host (execv; the path is used as given). Returns
/// only on failure, with ErrorKind::not_found or not_executable.
Result<void> exec_listing_on_host(const std::vector<std::string>& argv);

}  // namespace kiln::runner
