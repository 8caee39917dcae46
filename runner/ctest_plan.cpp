#include "runner/ctest_plan.h"

#include "common/fs.h"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace kiln::runner {
namespace {

/// Host tests named in the one-line note before "and N more".
constexpr size_t kNamesInSummary = 5;

bool starts_kiln_run(const std::vector<std::string>& command, bool (*is_kiln)(const std::string&)) {
  if (command.size() < 2 || command[1] != "run") return false;
  return std::filesystem::path(command[0]).filename() == "kiln" || (is_kiln && is_kiln(command[0]));
}

}  // namespace

Result<std::vector<PlannedTest>> plan_from_ctest_json(std::string_view json, const std::string& build_dir,
                                                      bool (*is_kiln)(const std::string& path)) {
  auto model = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (model.is_discarded() || !model.is_object()) return make_error("ctest's test list is not valid JSON");
  auto tests = model.find("tests");
  if (tests == model.end() || !tests->is_array()) return make_error("ctest's test list has no \"tests\" array");
  std::vector<PlannedTest> planned;
  for (const auto& t : *tests) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string())
      return make_error("ctest's test list has a test without a name");
    PlannedTest p;
    p.name = t["name"].get<std::string>();
    // A test whose executable was not found has no command: it stays (and fails) on the host.
    if (auto command = t.find("command"); command != t.end() && command->is_array()) {
      for (const auto& word : *command) {
        if (!word.is_string()) return make_error("ctest's test list: test {} has a non-string argument", p.name);
        p.command.push_back(word.get<std::string>());
      }
    }
    p.in_vm = starts_kiln_run(p.command, is_kiln);
    p.built_but_on_host = !p.in_vm && !p.command.empty() && fs::is_within(p.command[0], build_dir);
    planned.push_back(std::move(p));
  }
  return planned;
}

std::string summarize(const std::vector<PlannedTest>& tests) {
  size_t in_vm = 0;
  std::vector<std::string> on_host;
  for (const auto& t : tests) {
    if (t.in_vm) ++in_vm;
    else on_host.push_back(t.name);
  }
  auto line = fmt::format("{} test{} run{} in microVMs, {} stay{} on the host", in_vm, in_vm == 1 ? "" : "s",
                          in_vm == 1 ? "s" : "", on_host.size(), on_host.size() == 1 ? "s" : "");
  if (on_host.empty()) return line;
  line += " (";
  for (size_t i = 0; i < on_host.size() && i < kNamesInSummary; ++i) line += (i ? ", " : "") + on_host[i];
  if (on_host.size() > kNamesInSummary) line += fmt::format(" and {} more", on_host.size() - kNamesInSummary);
  return line + ")";
}

}  // namespace kiln::runner
