#include "vmm/qemu/qemu_vm.h"

#include "common/fs.h"
#include "common/log.h"
#include "vmm/qemu/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <cerrno>
#include <csignal>
#include <cstring>

namespace kiln::vmm::qemu {
namespace {

using nlohmann::json;

// Short on purpose: sun_path holds 108 bytes, and $TMPDIR can be long.
constexpr const char* kRuntimeParent = "/tmp";
constexpr const char* kStateFdName = "kiln-state";
constexpr size_t kStderrTailBytes = 1500;

void sleep_ms(long ms) {
  timespec ts{0, ms * 1'000'000};
  ::nanosleep(&ts, nullptr);
}

std::string join_argv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t'\"\\$") == std::string::npos;
    out += plain ? a : "'" + a + "'";
  }
  return out;
}

/// pread until `len` bytes or EOF.
std::string read_range(int fd, off_t offset, size_t len) {
  std::string out(len, '\0');
  size_t got = 0;
  while (got < len) {
    ssize_t n = ::pread(fd, out.data() + got, len - got, offset + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

}  // namespace

QemuVm::QemuVm(const QemuCommand& command, const QemuTimeouts& timeouts) : command_(command), timeouts_(timeouts) {}

QemuVm::~QemuVm() { destroy(); }

Result<std::unique_ptr<QemuVm>> QemuVm::start(QemuCommand command, const QemuTimeouts& timeouts) {
  log::ScopedTimer timer("qemu: start (spawn -> connected)");
  // Sockets and the console log live here only until qemu has created them and kiln has
  // connected / opened them; TempDir removes the directory when this function returns.
  KILN_ASSIGN_OR_RETURN(fs::TempDir runtime, fs::TempDir::create(kRuntimeParent, "kiln-vm-"));
  command.console_log = runtime.path() / "console.log";
  command.agent_socket = runtime.path() / "agent.sock";
  command.share_socket = runtime.path() / "share.sock";
  command.qmp_socket = runtime.path() / "qmp.sock";

  std::unique_ptr<QemuVm> vm(new QemuVm(command, timeouts));
  // qemu's stdout+stderr go to a memfd, not a pipe: nobody has to drain it for qemu to make
  // progress, and no file ever appears on disk.
  vm->stderr_.reset(::memfd_create("kiln-qemu-stderr", MFD_CLOEXEC));
  if (!vm->stderr_) return make_error("memfd_create for qemu's stderr failed: {}", std::strerror(errno));

  const std::vector<std::string> argv = build_qemu_argv(command);
  log::verbose("starting qemu: {}", join_argv(argv));
  SpawnOptions options;
  options.stdout_fd = vm->stderr_.get();
  options.stderr_fd = vm->stderr_.get();
  options.die_with_parent = true;
  {
    log::ScopedTimer t("qemu: spawn");
    auto child = ChildProcess::spawn(argv, options);
    if (!child) return with_context("cannot start qemu", child.error());
    vm->child_.emplace(std::move(*child));
  }

  const Deadline deadline = deadline_after(timeouts.start);
  QemuVm* self = vm.get();
  auto alive = [self] { return !self->exited(); };
  {
    log::ScopedTimer t("qemu: connect QMP");
    auto qmp = QmpClient::connect(command.qmp_socket, deadline, alive);
    if (!qmp) return vm->failure("qemu did not start", qmp.error());
    vm->qmp_.emplace(std::move(*qmp));
  }
  {
    log::ScopedTimer t("qemu: connect agent socket");
    auto agent = connect_unix(command.agent_socket, deadline, alive);
    if (!agent) return vm->failure("cannot connect to the guest agent channel of qemu", agent.error());
    vm->agent_ = std::move(*agent);
  }
  {
    log::ScopedTimer t("qemu: connect share socket");
    auto share = connect_unix(command.share_socket, deadline, alive);
    if (!share) return vm->failure("cannot connect to the share channel of qemu", share.error());
    vm->share_ = std::move(*share);
  }
  // O_RDWR only so console_output() can punch out old parts (bounded disk use).
  vm->console_.reset(::open(command.console_log.c_str(), O_RDWR | O_CLOEXEC));
  if (!vm->console_)
    return vm->failure("qemu started",
                       make_error("but its console log {} cannot be opened: {}", command.console_log.string(),
                                  std::strerror(errno)));
  return vm;  // `runtime` is removed here: sockets and log are unlinked, the fds stay open
}

bool QemuVm::exited() {
  if (exit_status_ || destroyed_) return true;
  if (pidfd_) {
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    return ::poll(&pfd, 1, 0) > 0;  // readable once the process has exited
  }
  if (!child_) return true;
  int status = 0;
  if (child_->poll_exited(&status)) {
    exit_status_ = status;
    return true;
  }
  return false;
}

std::optional<std::string> QemuVm::vmm_exited() {
  if (destroyed_) return std::string("qemu was stopped by kiln");
  if (!exited()) return std::nullopt;
  // With -no-reboot, qemu ends cleanly exactly when the guest shuts itself down.
  if (exit_status_ && WIFEXITED(*exit_status_) && WEXITSTATUS(*exit_status_) == 0)
    return std::string("the guest powered off or rebooted (qemu exited with code 0)");
  std::string tail = stderr_tail();
  return fmt::format("qemu {}{}", exit_status_ ? describe_wait_status(*exit_status_) : "exited",
                     tail.empty() ? "" : ": " + tail);
}

std::string QemuVm::stderr_tail() const {
  if (!stderr_) return {};
  struct stat st {};
  if (::fstat(stderr_.get(), &st) != 0 || st.st_size <= 0) return {};
  off_t from = st.st_size > static_cast<off_t>(kStderrTailBytes) ? st.st_size - static_cast<off_t>(kStderrTailBytes) : 0;
  std::string raw = read_range(stderr_.get(), from, static_cast<size_t>(st.st_size - from));
  // One line for the user: qemu's lines joined with " | ", control bytes dropped.
  std::string out;
  for (char c : raw) {
    if (c == '\n') {
      if (!out.empty() && !out.ends_with(" | ")) out += " | ";
    } else if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) {
      out += c;
    }
  }
  while (out.ends_with(" | ")) out.resize(out.size() - 3);
  return from > 0 ? "..." + out : out;
}

Error QemuVm::failure(const std::string& context, const Error& cause) {
  // qemu usually exits right after the error that broke the connection: give it a moment so
  // the message can name the exit status and include everything it printed.
  for (int i = 0; i < 50 && !exited(); ++i) sleep_ms(2);
  std::string message = context + ": ";
  // Once qemu is gone, how the connection broke ("Connection reset by peer") is noise:
  // what qemu printed is the cause.
  if (exit_status_ && !destroyed_)
    message += fmt::format("qemu {}", describe_wait_status(*exit_status_));
  else
    message += cause.message;
  if (std::string tail = stderr_tail(); !tail.empty()) message += "; qemu said: " + tail;
  return Error{message, cause.kind};
}

Result<json> QemuVm::command(const std::string& name, const json& arguments) {
  if (!qmp_) return make_error("qemu is not running (the VM was destroyed) so '{}' cannot run", name);
  return qmp_->execute(name, arguments, deadline_after(timeouts_.command));
}

Result<void> QemuVm::wait_for_migration(Deadline deadline) {
  for (;;) {
    auto info = qmp_->execute("query-migrate", json::object(), deadline);
    if (!info) return info.take_error();
    std::string status = qmp_string(*info, "status");
    if (status == "completed") return {};
    if (status == "failed" || status == "cancelled") {
      std::string desc = qmp_string(*info, "error-desc");
      return make_error("migration {}{}", status, desc.empty() ? "" : ": " + desc);
    }
    if (Clock::now() >= deadline) {
      Error e = make_error("migration did not finish in time (status '{}')", status);
      e.kind = ErrorKind::timeout;
      return e;
    }
    // A snapshot's stream is tiny (RAM is not in it): completion takes a few ms, so
    // poll tightly. A whole VM's (save_whole) takes longer; polling costs little.
    sleep_ms(1);
  }
}

Result<void> QemuVm::save_snapshot(const SnapshotFiles& files) {
  log::ScopedTimer total("qemu: save snapshot");
  if (destroyed_ || exited()) return make_error("cannot save a snapshot: {}", vmm_exited().value_or("qemu is gone"));
  if (command_.mode == LaunchMode::restore)
    return make_error("cannot save a snapshot of a VM from restore(): its RAM is a private copy-on-write mapping; "
                      "restore with restore_for_layer() to save a layer");
  std::error_code ec;
  if (!std::filesystem::equivalent(files.memory, command_.memory_file, ec))
    return make_error("cannot save a snapshot with memory file {}: this VM's RAM lives in {}; pass the same "
                      "SnapshotFiles to boot() (or restore_for_layer()'s `to`) and save_snapshot()",
                      files.memory.string(), command_.memory_file.string());
  return migrate_to_file(files.state, deadline_after(timeouts_.migration), false);
}

Result<void> QemuVm::save_whole(const SnapshotFiles& files, Deadline deadline) {
  log::ScopedTimer total("qemu: save whole VM");
  if (destroyed_ || exited()) return make_error("cannot save the VM: {}", vmm_exited().value_or("qemu is gone"));
  if (command_.mode != LaunchMode::restore)
    return make_error("cannot save a VM whose RAM is a shared file as a whole: save_snapshot() saves it");
  // RAM of a restored VM is a private mapping: x-ignore-shared does not skip it, so the
  // stream carries every page (a zero page as a flag). The memory file restore() maps
  // under it only has to be the right size.
  auto summary = command("query-memory-size-summary");
  if (!summary) return failure("cannot ask qemu for the guest's memory size", summary.error());
  const auto base = summary->find("base-memory");
  if (base == summary->end() || !base->is_number_unsigned() || base->get<uint64_t>() == 0)
    return make_error("qemu reported no guest memory size: {}", summary->dump());
  UniqueFd memory(::open(files.memory.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!memory || ::ftruncate(memory.get(), static_cast<off_t>(base->get<uint64_t>())) != 0)
    return make_error("cannot create {}: {}", files.memory.string(), std::strerror(errno));
  // Unthrottled: qemu's default migration bandwidth (32 MiB/s) would make saving a
  // 256 MiB guest take seconds of the test's time.
  json params = {{"max-bandwidth", int64_t{1} << 40}};
  if (auto r = command("migrate-set-parameters", params); !r) return failure("cannot configure migration", r.error());
  return migrate_to_file(files.state, deadline, true);
}

Result<void> QemuVm::migrate_to_file(const std::filesystem::path& state_file, Deadline deadline, bool exclusive) {
  {
    log::ScopedTimer t("qemu: save: stop vCPUs");
    auto r = command("stop");
    if (!r) return failure("cannot pause the VM", r.error());
  }
  // x-ignore-shared: RAM in a shared file-backed block is already on disk: leave it out.
  json caps = {{"capabilities", json::array({{{"capability", "x-ignore-shared"}, {"state", true}}})}};
  if (auto r = command("migrate-set-capabilities", caps); !r) return failure("cannot configure migration", r.error());

  // Migrate into an fd kiln opened rather than `exec:cat > state`: qemu SIGTERMs the exec
  // helper right after closing its pipe (io/channel-command.c), which can cut the state
  // file short. With fd: every byte is written by qemu itself before it reports completion.
  const int create = exclusive ? O_CREAT | O_EXCL | O_NOFOLLOW : O_CREAT | O_TRUNC;
  UniqueFd state(::open(state_file.c_str(), O_WRONLY | create | O_CLOEXEC, exclusive ? 0600 : 0644));
  if (!state) return make_error("cannot create snapshot state file {}: {}", state_file.string(), std::strerror(errno));
  {
    log::ScopedTimer t("qemu: save: write state");
    if (auto r = qmp_->execute_with_fd("getfd", {{"fdname", kStateFdName}}, state.get(),
                                       deadline_after(timeouts_.command));
        !r)
      return failure("cannot hand the state file to qemu", r.error());
    if (auto r = command("migrate", {{"uri", std::string("fd:") + kStateFdName}}); !r)
      return failure("cannot start saving the VM state", r.error());
    if (auto r = wait_for_migration(deadline); !r)
      return failure(fmt::format("saving the VM state to {} failed", state_file.string()), r.error());
  }
  {
    log::ScopedTimer t("qemu: save: fsync state");
    if (::fsync(state.get()) != 0)
      return make_error("cannot flush snapshot state file {}: {}", state_file.string(), std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(state.get(), &st) != 0 || st.st_size == 0)
    return make_error("qemu reported success but the state file {} is empty: the snapshot is unusable",
                      state_file.string());
  log::verbose("saved {} bytes of VM state to {}", st.st_size, state_file.string());
  return {};
}

bool QemuVm::rejected_state(const Error& cause) {
  if (cause.kind == ErrorKind::timeout) return false;
  // qemu alive and saying the incoming migration failed, or qemu gone after saying it
  // could not load the stream: the state itself is what qemu refused.
  if (!exited()) return cause.message.starts_with("migration failed");
  return stderr_tail().find("load of migration failed") != std::string::npos;
}

Result<void> QemuVm::load_state_and_run(int state_fd) {
  log::ScopedTimer total("qemu: restore: load state and run");
  KILN_TRY(load_state(state_fd));
  return resume();
}

Result<void> QemuVm::load_state(int state_fd) {
  json caps = {{"capabilities", json::array({{{"capability", "x-ignore-shared"}, {"state", true}}})}};
  if (auto r = command("migrate-set-capabilities", caps); !r) return failure("cannot configure migration", r.error());
  {
    log::ScopedTimer t("qemu: restore: load state");
    if (auto r = qmp_->execute_with_fd("getfd", {{"fdname", kStateFdName}}, state_fd,
                                       deadline_after(timeouts_.command));
        !r)
      return failure("cannot hand the state file to qemu", r.error());
    if (auto r = command("migrate-incoming", {{"uri", std::string("fd:") + kStateFdName}}); !r)
      return failure("cannot start loading the VM state", r.error());
    // A corrupt stream makes qemu 7.2 exit (QMP sees EOF); a stream that never ends hits the deadline.
    if (auto r = wait_for_migration(deadline_after(timeouts_.migration)); !r) {
      Error e = failure("cannot load the snapshot state (the snapshot is corrupt or from another qemu/kiln; rebake it)",
                        r.error());
      if (rejected_state(r.error())) e.kind = ErrorKind::corrupt;
      return e;
    }
  }
  return {};
}

Result<void> QemuVm::resume() {
  log::ScopedTimer t("qemu: restore: cont");
  if (auto r = command("cont"); !r) return failure("cannot resume the restored VM", r.error());
  return {};
}

Result<QemuVmHandover> QemuVm::hand_over() {
  if (!qmp_ || !child_ || exited()) return make_error("cannot hand over a VM whose qemu is gone");
  QemuVmHandover h;
  h.pid = child_->pid();
  h.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, h.pid, 0)));
  if (!h.pidfd) return make_error("pidfd_open of qemu ({}) failed: {}", h.pid, std::strerror(errno));
  h.console.reset(::fcntl(console_.get(), F_DUPFD_CLOEXEC, 0));
  h.stderr_log.reset(::fcntl(stderr_.get(), F_DUPFD_CLOEXEC, 0));
  if (!h.console || !h.stderr_log) return make_error("cannot share qemu's logs: {}", std::strerror(errno));
  h.qmp = std::move(*qmp_).detach();
  qmp_.reset();
  h.agent = std::move(agent_);
  h.share = std::move(share_);
  return h;
}

std::unique_ptr<QemuVm> QemuVm::adopt(QemuVmHandover handover, const QemuTimeouts& timeouts) {
  QemuCommand command;
  command.mode = LaunchMode::restore;  // private RAM: save_snapshot() refuses, as for restore()
  std::unique_ptr<QemuVm> vm(new QemuVm(command, timeouts));
  vm->adopted_pid_ = handover.pid;
  vm->pidfd_ = std::move(handover.pidfd);
  vm->qmp_.emplace(QmpClient::attach(std::move(handover.qmp)));
  vm->agent_ = std::move(handover.agent);
  vm->share_ = std::move(handover.share);
  vm->console_ = std::move(handover.console);
  vm->stderr_ = std::move(handover.stderr_log);
  return vm;
}

std::string QemuVm::console_output() {
  if (!console_) return {};
  struct stat st {};
  if (::fstat(console_.get(), &st) != 0 || st.st_size <= 0) return {};
  off_t from = st.st_size > kMaxConsoleBytes ? st.st_size - kMaxConsoleBytes : 0;
  // The guest controls how much it prints: free the disk blocks of the dropped head
  // (qemu writes at its own offset; a hole in front is harmless to it).
  if (from > console_punched_ &&
      ::fallocate(console_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, from) == 0)
    console_punched_ = from;
  std::string text = read_range(console_.get(), from, static_cast<size_t>(st.st_size - from));
  return from > 0 ? "[... earlier console output dropped ...]\n" + text : text;
}

void QemuVm::destroy() {
  if (destroyed_) return;
  destroyed_ = true;
  if (child_) {
    child_->kill();  // SIGKILL + reap; a no-op if already reaped
    child_.reset();
  }
  if (pidfd_) {
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);  // its parent reaps it
    pidfd_.reset();
  }
  qmp_.reset();
  agent_.reset();
  share_.reset();
  // console_ and stderr_ stay open: a caller reports them after the VM is gone.
}

}  // namespace kiln::vmm::qemu
