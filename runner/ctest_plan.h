// Which of a build tree's ctest tests run in microVMs and which stay on the host,
// read from `ctest --show-only=json-v1`: the count the whole-project switch
// (docs/cmake.md) reports, and `kiln tests --list`.
#pragma once

#include "common/result.h"

#include <string>
#include <string_view>
#include <vector>

namespace kiln::runner {

struct PlannedTest {
  std::string name;
  std::vector<std::string> command;
  bool in_vm = false;
  /// A host test whose command is a file in the build tree: a built executable that
  /// got no launcher (written as COMMAND $<TARGET_FILE:x>).
  bool built_but_on_host = false;
};

/// Classify every test of ctest's JSON model. A test runs in a microVM when its
/// command starts with a kiln binary (file name `kiln`, or `is_kiln(path)`) and `run`.
Result<std::vector<PlannedTest>> plan_from_ctest_json(std::string_view json, const std::string& build_dir,
                                                      bool (*is_kiln)(const std::string& path) = nullptr);

/// The one-line note: "N tests run in microVMs, M stay on the host (a, b, ...)".
std::string summarize(const std::vector<PlannedTest>& tests);

}  // namespace kiln::runner
