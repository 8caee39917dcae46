// `kiln tests`: which of a build tree's tests run in microVMs and which stay on the
// host. The whole-project switch (docs/cmake.md) prints its one-line note after
// each build; --list shows every test.
#include "common/log.h"
#include "common/subprocess.h"
#include "runner/cli.h"
#include "runner/ctest_plan.h"
#include "runner/exit_codes.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace kiln::runner {
namespace {

struct TestsCliOptions {
  std::string test_dir = ".";
  std::string ctest = "ctest";
  std::string config;
  bool list = false;
};

/// Whether `path` is this kiln binary (the launcher may name it by any path).
bool is_this_kiln(const std::string& path) {
  struct stat self{}, other{};
  return ::stat("/proc/self/exe", &self) == 0 && ::stat(path.c_str(), &other) == 0 && self.st_dev == other.st_dev &&
         self.st_ino == other.st_ino;
}

Result<std::vector<PlannedTest>> read_plan(const TestsCliOptions& o) {
  std::vector<std::string> argv{o.ctest, "--show-only=json-v1", "--test-dir", o.test_dir};
  if (!o.config.empty()) argv.insert(argv.end(), {"-C", o.config});
  KILN_ASSIGN_OR_RETURN(CapturedRun listed, run_captured(argv));
  if (listed.exit_code != 0)
    return make_error("{} --show-only=json-v1 in {} failed (exit {}): {}", o.ctest, o.test_dir, listed.exit_code,
                      listed.err);
  auto build_dir = std::filesystem::absolute(o.test_dir).lexically_normal().string();
  return plan_from_ctest_json(listed.out, build_dir, is_this_kiln);
}

void print_list(const std::vector<PlannedTest>& tests) {
  for (const auto& t : tests) {
    const char* where = t.in_vm ? "microVM" : "host";
    const char* why = t.built_but_on_host ? "  (a built executable with no launcher: write COMMAND <target>)" : "";
    std::printf("%-8s %s%s\n", where, t.name.c_str(), why);
  }
}

int execute(const TestsCliOptions& o) {
  auto tests = read_plan(o);
  if (!tests) {
    log::error(tests.error().message);
    return exit_code::kiln_error;
  }
  if (o.list) print_list(*tests);
  std::printf("kiln: %s\n", summarize(*tests).c_str());
  std::string unlaunched;
  for (const auto& t : *tests)
    if (t.built_but_on_host) unlaunched += (unlaunched.empty() ? "" : ", ") + t.name;
  if (!unlaunched.empty())
    std::printf("kiln: %s run%s a built executable on the host: CMake puts no launcher in front of "
                "COMMAND $<TARGET_FILE:x>; write COMMAND x\n",
                unlaunched.c_str(), unlaunched.find(',') == std::string::npos ? "s" : "");
  return 0;
}

}  // namespace

void register_tests(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<TestsCliOptions>();
  auto* cmd = app.add_subcommand("tests", "Show which of a build tree's ctest tests run in microVMs and which stay on the host");
  cmd->add_option("--test-dir", o->test_dir, "The build tree (default: the current directory)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--ctest", o->ctest, "The ctest to ask (default: ctest on PATH)");
  cmd->add_option("-C,--config", o->config, "Configuration, for multi-config generators (ctest -C)");
  cmd->add_flag("--list", o->list, "List every test with where it runs");
  cmd->callback([o, &exit_code] { exit_code = execute(*o); });
}

}  // namespace kiln::runner
