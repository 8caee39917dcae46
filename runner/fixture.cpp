#include "runner/fixture.h"

#include "common/digest.h"
#include "common/fs.h"
#include "runner/run_in_vm.h"

#include <cstdlib>
#include <sstream>

namespace kiln::runner {
namespace {

std::string first_word(const std::string& command) {
  std::istringstream in(command);
  std::string word;
  in >> word;
  return word;
}

// Where a shell on the host would find `name` (one without '/'), if anywhere.
std::optional<std::filesystem::path> on_host_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    std::filesystem::path candidate = std::filesystem::path(dir) / name;
    if (fs::is_executable_file(candidate)) return candidate;
  }
  return std::nullopt;
}

std::string short_label(const std::string& command) {
  std::string s = command.size() > 60 ? command.substr(0, 57) + "..." : command;
  for (char& c : s)
    if (c == '\n' || c == '\t') c = ' ';
  return "setup: " + s;
}

}  // namespace

Result<Payload> setup_payload(const SetupSpec& setup, SetupCommandFrom from) {
  Payload payload;
  const std::string word = first_word(setup.command);
  if (word.empty()) return make_error("--setup is empty: give the command to run once, e.g. --setup 'redis-server --daemonize yes'");
  std::optional<std::filesystem::path> exe;
  if (from == SetupCommandFrom::guest) {
    // The image's own program.
  } else if (word.find('/') != std::string::npos) {
    if (fs::is_executable_file(word)) exe = std::filesystem::absolute(word).lexically_normal();
  } else {
    exe = on_host_path(word);
  }
  if (exe) KILN_TRY(payload.add_executable_with_closure(*exe));
  for (const auto& f : setup.files) {
    auto added = fs::is_executable_file(f) ? payload.add_executable_with_closure(f) : payload.add_path(f);
    // A data file that merely has an x bit: it is in the payload already, as a file.
    if (!added && added.error().kind == ErrorKind::not_executable) continue;
    if (!added) return with_context("--setup-file " + f, added.error());
  }
  return payload;
}

Result<void> run_setup_in(vmm::Vm& vm, const SetupSpec& setup, const Payload& payload, bool echo) {
  KILN_ASSIGN_OR_RETURN(auto outcome, run_setup(vm, payload, setup.command, setup.base_env, setup.env, echo));
  if (outcome.exit_code == 0) return {};
  std::string output = outcome.output.empty() ? "(it printed nothing)\n" : outcome.output;
  if (output.back() != '\n') output += '\n';
  return make_error("the setup command {} (nothing was saved):\n  /bin/sh -c '{}'\n--- its output ---\n{}---",
                    outcome.summary, setup.command, output);
}

Result<LayerRecipe> fixture_recipe(const SetupSpec& setup, const Payload& payload, bool echo) {
  KILN_ASSIGN_OR_RETURN(auto payload_digest, payload.content_digest());
  std::string keyed = "command\n" + setup.command + "\npayload\n" + payload_digest + "\nenv\n";
  for (const auto& e : setup.env) keyed += e + '\n';
  if (!setup.base_env.empty()) keyed += "base env\n";  // (absent for the default guest: its keys stay)
  for (const auto& e : setup.base_env) keyed += e + '\n';
  LayerRecipe r;
  r.kind = std::string(snapshot::kLayerKindFixture);
  r.content_digest = digest_bytes(keyed);
  r.label = short_label(setup.command);
  r.doing = "running the setup command once (fixture snapshot)";
  r.populate = [setup, &payload, echo](vmm::Vm& vm) { return run_setup_in(vm, setup, payload, echo); };
  return r;
}

}  // namespace kiln::runner
