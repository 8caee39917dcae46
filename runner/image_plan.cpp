#include "runner/image_plan.h"

#include "runner/run_in_vm.h"

#include <filesystem>

namespace kiln::runner {
namespace {

bool has_key(const std::vector<std::string>& env, std::string_view key) {
  for (const std::string& e : env)
    if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=') return true;
  return false;
}

// The image's Env, with the variables a command cannot do without defaulted as a
// container runtime would (PATH), and nothing of kiln's default guest's.
std::vector<std::string> image_base_env(const image::ImageRunConfig& config) {
  std::vector<std::string> env = config.env;
  if (!has_key(env, "PATH")) env.push_back(default_guest_env().front());  // PATH=...
  return env;
}

// A host executable (the command had a '/', so plan_run resolved and shipped it) starts
// through the host loader shipped with it, as the payload found it when it gathered the
// executable's closure.
void start_through_own_loader(RunPlan& plan) {
  std::vector<std::string>& argv = plan.request.argv;
  const std::string& exe = argv.front();
  if (exe.find('/') == std::string::npos) return;  // a command of the image, from its PATH
  auto interp = plan.payload.elf_interpreter_of(exe);
  if (!interp) {
    // A #! script: its interpreter line is read in the guest, so /bin/sh is the image's.
    argv.front() = kHostFilesPrefix + exe;
    return;
  }
  argv = loader_argv(kHostFilesPrefix, *interp, plan.payload.library_dirs(), argv);
}

}  // namespace

std::vector<std::string> loader_argv(const std::string& prefix, const std::string& interp,
                                     const std::vector<std::string>& library_dirs,
                                     const std::vector<std::string>& argv) {
  if (interp.empty()) {
    std::vector<std::string> out = argv;
    out.front() = prefix + argv.front();
    return out;
  }
  std::string path;
  for (const std::string& dir : library_dirs) path += (path.empty() ? "" : ":") + prefix + dir;
  std::vector<std::string> out = {prefix + interp, "--argv0", argv.front()};
  if (!path.empty()) {
    out.push_back("--library-path");
    out.push_back(path);
  }
  out.push_back("--inhibit-cache");  // the image's ld.so.cache names the image's libraries
  out.push_back(prefix + argv.front());
  out.insert(out.end(), argv.begin() + 1, argv.end());
  return out;
}

Result<void> plan_for_image(const GuestImage& image, const RunArgs& args, RunPlan& plan) {
  const image::ImageRunConfig& config = image.image.config;
  start_through_own_loader(plan);
  plan.payload.place_under(kHostFilesPrefix);
  if (plan.setup) {
    plan.setup->base_env = image_base_env(config);
    KILN_ASSIGN_OR_RETURN(plan.setup_files, setup_payload(*plan.setup, SetupCommandFrom::guest));
    plan.setup_files.place_under(kHostFilesPrefix);
  }
  plan.request.base_env = image_base_env(config);
  if (args.cwd.empty() && !config.working_dir.empty()) plan.request.cwd = config.working_dir;
  plan.request.user = args.user.empty() ? config.user : args.user;
  return {};
}

}  // namespace kiln::runner
