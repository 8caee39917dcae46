// One running qemu process: its QMP connection, agent and share channels, console log and stderr.
#pragma once

#include "vmm/engine.h"
#include "vmm/qemu/qemu_command.h"
#include "vmm/qemu/qmp_client.h"
#include "common/unique_fd.h"

#include "common/subprocess.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace kiln::vmm::qemu {

/// How long kiln waits on qemu. Generous: they bound hangs, they do not pace anything.
struct QemuTimeouts {
  std::chrono::milliseconds start{15000};      ///< spawn -> QMP, agent and share sockets connected
  std::chrono::milliseconds command{10000};    ///< one QMP command
  std::chrono::milliseconds migration{60000};  ///< writing or loading the state stream
};

/// A restored, paused VM's process and connections as one process hands them to another
/// (the pool daemon to a kiln run, runner/pool_*): the receiver adopts them and resumes it.
struct QemuVmHandover {
  pid_t pid = -1;
  UniqueFd pidfd;  ///< the qemu process (pidfd_open): the adopter polls and kills it through this
  QmpClient::Detached qmp;
  UniqueFd agent;
  UniqueFd share;
  UniqueFd console;
  UniqueFd stderr_log;
};

class QemuVm final : public Vm {
 public:
  /// Largest console log tail kept and returned by console_output().
  static constexpr off_t kMaxConsoleBytes = 1 << 20;

  /// Spawn qemu for `command` (its runtime paths are filled in here), connect QMP, the
  /// agent socket and the share socket, then remove every runtime file: from then on only open fds remain, so
  /// even a SIGKILLed kiln leaves nothing behind (qemu dies with it: PR_SET_PDEATHSIG).
  /// PR_SET_PDEATHSIG follows the spawning *thread*: call this from a thread that
  /// outlives the VM (the main thread), or qemu is killed when that thread exits.
  static Result<std::unique_ptr<QemuVm>> start(QemuCommand command, const QemuTimeouts& timeouts);

  /// Restore mode: load the migration stream from `state_fd` and resume the guest.
  Result<void> load_state_and_run(int state_fd);
  /// Restore mode: load the migration stream; the guest stays paused until resume().
  Result<void> load_state(int state_fd);
  /// Start the vCPUs of a paused VM (QMP cont).
  Result<void> resume();

  /// Give this VM's connections to another process: the QMP, agent and share sockets
  /// move into the handover (this object can no longer drive the VM), the console and
  /// stderr logs are shared. This object still owns the qemu process: destroy() kills it.
  Result<QemuVmHandover> hand_over();
  /// A VM another process started and handed over. It is not this process's child:
  /// exit is seen and the kill sent through the pidfd (no wait status).
  static std::unique_ptr<QemuVm> adopt(QemuVmHandover handover, const QemuTimeouts& timeouts);

  ~QemuVm() override;
  QemuVm(const QemuVm&) = delete;
  QemuVm& operator=(const QemuVm&) = delete;

  int agent_fd() const override { return agent_.get(); }
  int share_fd() const override { return share_.get(); }
  std::string console_output() override;
  std::optional<std::string> vmm_exited() override;
  Result<void> save_snapshot(const SnapshotFiles& files) override;
  Result<void> save_whole(const SnapshotFiles& files, Deadline deadline) override;
  void destroy() override;

  /// The QMP connection (diagnostics and tests); null once destroyed.
  QmpClient* qmp() { return qmp_ ? &*qmp_ : nullptr; }
  pid_t pid() const { return child_ ? child_->pid() : adopted_pid_; }

 private:
  QemuVm(const QemuCommand& command, const QemuTimeouts& timeouts);
  /// Non-blocking: has qemu exited? Reaps it and keeps the wait status.
  bool exited();
  /// The last lines qemu wrote to stderr, on one line ("" if none).
  std::string stderr_tail() const;
  /// `cause`, plus how qemu ended and what it printed: most qemu failures explain themselves there.
  Error failure(const std::string& context, const Error& cause);
  /// Did qemu refuse the snapshot state itself (a corrupt or foreign stream), as opposed
  /// to failing for another reason while loading it (killed, out of memory, too slow)?
  bool rejected_state(const Error& cause);
  /// Poll query-migrate until the migration completes, fails or `deadline` passes.
  /// Pause the vCPUs and migrate into `state_file` (a new file), RAM included unless it
  /// is a shared file-backed block (x-ignore-shared).
  Result<void> migrate_to_file(const std::filesystem::path& state_file, Deadline deadline, bool exclusive);
  Result<void> wait_for_migration(Deadline deadline);
  Result<nlohmann::json> command(const std::string& name, const nlohmann::json& arguments = nlohmann::json::object());

  QemuCommand command_;
  QemuTimeouts timeouts_;
  std::optional<ChildProcess> child_;
  UniqueFd pidfd_;  // an adopted VM's qemu (not a child of this process)
  pid_t adopted_pid_ = -1;
  std::optional<int> exit_status_;
  bool destroyed_ = false;
  std::optional<QmpClient> qmp_;
  UniqueFd agent_;
  UniqueFd share_;
  UniqueFd console_;  // the console log, already unlinked; qemu keeps writing to it
  UniqueFd stderr_;   // memfd holding qemu's stdout and stderr
  off_t console_punched_ = 0;
};

}  // namespace kiln::vmm::qemu
