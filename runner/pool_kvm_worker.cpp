#include "runner/pool_kvm_worker.h"

#include "common/fd_passing.h"
#include "common/log.h"
#include "common/subprocess.h"
#include "image/oci/json_fields.h"
#include "snapshot/store.h"
#include "vmm/kvm/kvm_engine.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::runner::pool {
namespace {

using nlohmann::json;
namespace json_fields = image::json_fields;

/// How long a worker may take to exec, open /dev/kvm and restore (kiln itself runs
/// under TCG in the nested lab: hundreds of milliseconds there).
constexpr std::chrono::seconds kReadyWait{60};
/// Console bytes an answer carries: the tail, which is what error reports show.
constexpr size_t kConsoleTail = 48 << 10;

// ---- the worker process ----

// The VM `request` asks for, restored and paused, after checking that this worker's
// engine and the snapshot's files are the ones the run saw.
Result<std::unique_ptr<vmm::kvm::KvmVmInstance>> restore_requested(const PoolRequest& request) {
  vmm::EngineOptions options;
  options.name = "kvm";
  KILN_ASSIGN_OR_RETURN(auto engine, vmm::kvm::KvmEngine::create(options));
  if (engine->identity() != request.engine_identity)
    return make_error("the worker's engine is {}, the run's {}", engine->identity(), request.engine_identity);
  // The overlays' extents come from the store again (the message carries their files only).
  KILN_ASSIGN_OR_RETURN(auto files, snapshot::overlay_restore_files(request.files.state.parent_path()));
  bool same = files.state == request.files.state && files.memory == request.files.memory &&
              files.overlays.size() == request.files.overlays.size();
  for (size_t i = 0; same && i < files.overlays.size(); ++i)
    same = files.overlays[i].file == request.files.overlays[i].file;
  if (!same) return make_error("the snapshot's layer chain is not the one the run restores");
  auto identity = files_identity(files);
  if (!identity || *identity != request.files_identity) return make_error("the snapshot was replaced or removed");
  return engine->restore_paused(request.spec, files);
}

json answer_op(const json& message, vmm::kvm::KvmVmInstance& vm) {
  auto op = json_fields::string_field(message, "op", true);
  if (!op) return {{"ok", false}, {"why", op.error().message}};
  if (*op == "start") {
    auto started = vm.start();
    return started ? json{{"ok", true}} : json{{"ok", false}, {"why", started.error().message}};
  }
  if (*op == "exited") {
    auto why = vm.vmm_exited();
    return {{"exited", why ? json(*why) : json(nullptr)}};
  }
  if (*op == "console") {
    std::string console = vm.console_output();
    if (console.size() > kConsoleTail) console.erase(0, console.size() - kConsoleTail);
    return {{"console", console}};  // serve_vm replaces what is not UTF-8 as it sends
  }
  if (*op == "save_whole") {
    auto state = json_fields::string_field(message, "state", true);
    auto memory = json_fields::string_field(message, "memory", true);
    auto ms = json_fields::uint_field(message, "ms", 3'600'000);
    if (!state || !memory || !ms) return {{"ok", false}, {"why", "a save_whole without its files"}};
    auto saved = vm.save_whole(vmm::SnapshotFiles{*state, *memory, {}},
                               deadline_after(std::chrono::milliseconds(*ms)));
    return saved ? json{{"ok", true}} : json{{"ok", false}, {"why", saved.error().message}};
  }
  return {{"ok", false}, {"why", "unknown op " + *op}};
}

// Answer the run until it closes the control socket.
void serve_vm(int control, vmm::kvm::KvmVmInstance& vm) {
  const Deadline never = Clock::time_point::max();
  for (;;) {
    auto message = receive_fd_message(control, kMaxMessageBytes, 0, never);
    if (!message || !*message) return;
    auto request = json_fields::parse_object((*message)->bytes, kMaxMessageBytes, "a worker request");
    json answer = request ? answer_op(*request, vm) : json{{"ok", false}, {"why", request.error().message}};
    if (!send_fd_message(control, answer.dump(-1, ' ', false, json::error_handler_t::replace))) return;
  }
}

// ---- the daemon's side ----

class ReadyKvmWorker final : public ReadyVm {
 public:
  ReadyKvmWorker(ChildProcess child, UniqueFd control, UniqueFd agent, UniqueFd share)
      : child_(std::move(child)), control_(std::move(control)), agent_(std::move(agent)), share_(std::move(share)) {}

  bool exited() override {
    int status = 0;
    return child_.poll_exited(&status);
  }

  Result<void> hand_over(int conn) override {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child_.pid(), 0)));
    if (!pidfd) return make_error("pidfd_open of the kvm worker ({}) failed: {}", child_.pid(), std::strerror(errno));
    json reply = {{"hit", true}, {"vm", "kvm-worker"}, {"pid", child_.pid()}};
    KILN_TRY(send_fd_message(conn, reply.dump(), {pidfd.get(), control_.get(), agent_.get(), share_.get()}));
    // The run holds them now: the worker sees EOF when the run closes its control socket.
    control_.reset();
    agent_.reset();
    share_.reset();
    return {};
  }

 private:
  ChildProcess child_;  // killed and reaped with this object
  UniqueFd control_, agent_, share_;
};

}  // namespace

Result<json> worker_call(int control, const json& request, Deadline deadline) {
  KILN_TRY(send_fd_message(control, request.dump()));
  KILN_ASSIGN_OR_RETURN(auto answer, receive_fd_message(control, kMaxMessageBytes, 0, deadline));
  if (!answer) return make_error("the kvm worker closed its control socket");
  return json_fields::parse_object(answer->bytes, kMaxMessageBytes, "the kvm worker's answer");
}

int run_kvm_worker() {
  const int control = STDIN_FILENO;
  auto message = receive_fd_message(control, kMaxMessageBytes, 0, deadline_after(kReadyWait));
  if (!message || !*message) return 1;
  auto request = decode_take((*message)->bytes);
  auto vm = request ? restore_requested(*request) : Result<std::unique_ptr<vmm::kvm::KvmVmInstance>>(request.error());
  if (!vm) {
    (void)send_fd_message(control, json{{"ready", false}, {"why", vm.error().message}}.dump());
    return 1;
  }
  if (!send_fd_message(control, json{{"ready", true}}.dump(), {(*vm)->agent_fd(), (*vm)->share_fd()})) return 1;
  serve_vm(control, **vm);
  return 0;
}

Result<std::unique_ptr<ReadyVm>> start_kvm_worker(const PoolRequest& request) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    return make_error("cannot make a socket pair: {}", std::strerror(errno));
  UniqueFd ours(pair[0]), theirs(pair[1]);
  SpawnOptions options;
  options.stdin_fd = theirs.get();
  options.stderr_fd = STDERR_FILENO;  // the daemon's log
  // The state file names the restore point in `ps` (and tests find a worker by its cache).
  KILN_ASSIGN_OR_RETURN(auto child, ChildProcess::spawn({"/proc/self/exe", "serve", "--kvm-worker",
                                                         request.files.state.string()},
                                                        options));
  theirs.reset();
  KILN_TRY(send_fd_message(ours.get(), encode_take(request)));
  KILN_ASSIGN_OR_RETURN(auto answer, receive_fd_message(ours.get(), kMaxMessageBytes, 2, deadline_after(kReadyWait)));
  if (!answer) return make_error("the kvm worker exited before its VM was ready");
  KILN_ASSIGN_OR_RETURN(json j, json_fields::parse_object(answer->bytes, kMaxMessageBytes, "the kvm worker's answer"));
  if (!j.contains("ready") || !j["ready"].is_boolean()) return make_error("the kvm worker's answer has no 'ready'");
  if (!j["ready"].get<bool>()) {
    auto why = json_fields::string_field(j, "why", false);
    return make_error("{}", why && !why->empty() ? *why : "the kvm worker could not restore the VM");
  }
  if (answer->fds.size() != 2) return make_error("the kvm worker sent no agent and share channels");
  return std::unique_ptr<ReadyVm>(std::make_unique<ReadyKvmWorker>(
      std::move(child), std::move(ours), std::move(answer->fds[0]), std::move(answer->fds[1])));
}

}  // namespace kiln::runner::pool
