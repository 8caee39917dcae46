#include "runner/pool_client.h"

#include "common/env.h"
#include "common/fd_passing.h"
#include "common/fs.h"
#include "common/log.h"
#include "runner/pool_kvm_vm.h"
#include "runner/pool_protocol.h"
#include "vmm/qemu/qemu_vm.h"

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace kiln::runner {
namespace {

using nlohmann::json;

constexpr std::chrono::milliseconds kAnswerTimeout{2000};

// A VM lent by the daemon: it is ours while `lease_` stays open; closing it (or dying)
// tells the daemon to kill that qemu and reap it.
class PooledVm final : public vmm::Vm {
 public:
  PooledVm(std::unique_ptr<vmm::qemu::QemuVm> vm, UniqueFd lease) : vm_(std::move(vm)), lease_(std::move(lease)) {}
  ~PooledVm() override { destroy(); }
  int agent_fd() const override { return vm_->agent_fd(); }
  int share_fd() const override { return vm_->share_fd(); }
  std::string console_output() override { return vm_->console_output(); }
  std::optional<std::string> vmm_exited() override { return vm_->vmm_exited(); }
  Result<void> save_snapshot(const vmm::SnapshotFiles& files) override { return vm_->save_snapshot(files); }
  Result<void> save_whole(const vmm::SnapshotFiles& files, Deadline deadline) override {
    return vm_->save_whole(files, deadline);
  }
  void destroy() override {
    vm_->destroy();
    lease_.reset();
  }

 private:
  std::unique_ptr<vmm::qemu::QemuVm> vm_;
  UniqueFd lease_;
};

// Start `kiln serve` detached from this run: its own session, no descriptor of ours
// (ctest waits until every copy of a test's stdout and stderr is closed), not our child.
// `first_take` (this run's restore point) waits for it on a connection of its own, so
// it learns the restore point however long it takes to start (under TCG, in the nested
// lab, longer than a run should wait for it) and the run does not wait at all.
void start_daemon(const std::filesystem::path& socket, const std::string& first_take) {
  const std::string log_path = socket.string() + ".log";
  (void)fs::make_dirs(socket.parent_path());  // for the log; the daemon makes it private (0700)
  int pair[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) pair[0] = pair[1] = -1;
  UniqueFd ours(pair[0]), theirs(pair[1]);
  if (ours && !send_fd_message(ours.get(), first_take)) theirs.reset();
  const std::string fd_arg = std::to_string(pool::kFirstTakeFd);
  pid_t pid = ::fork();
  if (pid < 0) return;
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec: this process may have threads.
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    int null_fd = ::open("/dev/null", O_RDWR);
    int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(log_fd >= 0 ? log_fd : null_fd, 2);
    // The take goes to descriptor 3 (dup2 onto itself would leave it close-on-exec).
    bool passed = false;
    if (theirs)
      passed = theirs.get() == pool::kFirstTakeFd ? ::fcntl(pool::kFirstTakeFd, F_SETFD, 0) == 0
                                                  : ::dup2(theirs.get(), pool::kFirstTakeFd) == pool::kFirstTakeFd;
    ::close_range(passed ? pool::kFirstTakeFd + 1 : pool::kFirstTakeFd, ~0U, 0);
    if (::chdir("/") != 0) ::_exit(127);
    const char* argv[] = {"kiln", "serve", "--first-take-fd", fd_arg.c_str(), nullptr};
    if (!passed) argv[2] = nullptr;
    ::execv("/proc/self/exe", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  log::verbose("pool: started the pool daemon for {}; it restores VMs for the next runs", socket.string());
}

// A lent qemu VM: its process's descriptors, resumed here.
Result<std::unique_ptr<vmm::Vm>> adopt_qemu(const json& j, std::vector<UniqueFd> fds, UniqueFd lease) {
  if (fds.size() != pool::kHandoverFds || !j["pid"].is_number_integer() || !j["qmp_next_id"].is_number_unsigned() ||
      !j["qmp_pending"].is_string())
    return make_error("a hit without the VM's descriptors");
  vmm::qemu::QemuVmHandover h;
  h.pid = j["pid"].get<pid_t>();
  h.pidfd = std::move(fds[0]);
  h.qmp.fd = std::move(fds[1]);
  h.qmp.next_id = j["qmp_next_id"].get<uint64_t>();
  h.qmp.pending = j["qmp_pending"].get<std::string>();
  h.agent = std::move(fds[2]);
  h.share = std::move(fds[3]);
  h.console = std::move(fds[4]);
  h.stderr_log = std::move(fds[5]);
  auto vm = vmm::qemu::QemuVm::adopt(std::move(h), vmm::qemu::QemuTimeouts{});
  KILN_TRY(vm->resume());
  return std::unique_ptr<vmm::Vm>(new PooledVm(std::move(vm), std::move(lease)));
}

// A lent kvm VM: its worker process's control socket and the guest's channels.
Result<std::unique_ptr<vmm::Vm>> adopt_kvm(const json& j, std::vector<UniqueFd> fds, UniqueFd lease) {
  if (fds.size() != pool::kKvmHandoverFds || !j["pid"].is_number_integer())
    return make_error("a hit without the kvm worker's descriptors");
  KvmWorkerHandover h;
  h.pid = j["pid"].get<pid_t>();
  h.pidfd = std::move(fds[0]);
  h.control = std::move(fds[1]);
  h.agent = std::move(fds[2]);
  h.share = std::move(fds[3]);
  h.lease = std::move(lease);
  return adopt_kvm_worker(std::move(h));
}

// Adopt a lent VM from the daemon's answer, or say why not. `engine`: the run's.
Result<std::unique_ptr<vmm::Vm>> adopt(FdMessage answer, UniqueFd lease, const std::string& engine) {
  json j = json::parse(answer.bytes, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("hit") || !j["hit"].is_boolean()) return make_error("unreadable answer");
  if (!j["hit"].get<bool>())
    return make_error("{}", j.contains("why") && j["why"].is_string() ? j["why"].get<std::string>() : "a miss");
  const std::string kind = j.contains("vm") && j["vm"].is_string() ? j["vm"].get<std::string>() : "";
  if (engine == "qemu" && kind == "qemu") return adopt_qemu(j, std::move(answer.fds), std::move(lease));
  if (engine == "kvm" && kind == "kvm-worker") return adopt_kvm(j, std::move(answer.fds), std::move(lease));
  return make_error("a VM of kind '{}' for a run of the {} engine", kind, engine);
}

// What a run asks the daemon for: its restore point, every path absolute (the daemon
// runs in /), and the files' identities now.
std::optional<pool::PoolRequest> pool_request(const vmm::Engine& engine, const vmm::GuestSpec& spec,
                                              const vmm::SnapshotFiles& files, const std::string& label) {
  pool::PoolRequest request;
  request.engine = engine.name();
  request.engine_identity = engine.identity();
  request.accel = engine.on_kvm() ? "kvm" : "tcg";
  request.spec = spec;
  request.files = files;
  request.label = label;
  for (auto* p : {&request.spec.kernel, &request.spec.initramfs, &request.files.state, &request.files.memory})
    *p = std::filesystem::absolute(*p);
  for (auto& o : request.files.overlays) o = vmm::MemoryOverlay{std::filesystem::absolute(o.file), {}};
  for (auto& d : request.spec.disks) d.image = std::filesystem::absolute(d.image);
  auto identity = pool::files_identity(request.files);
  if (!identity) return std::nullopt;
  request.files_identity = *identity;
  return request;
}

}  // namespace

UniqueFd connect_pool_daemon(const std::filesystem::path& path, bool* absent) {
  bool& start = *absent;
  start = false;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    start = errno == ENOENT;
    return {};
  }
  if (!S_ISSOCK(st.st_mode) || st.st_uid != ::geteuid()) {
    log::verbose("pool: {} is not this user's socket; running without the pool", path.string());
    return {};
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.native().size() + 1);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    start = errno == ECONNREFUSED;  // a stale socket: its daemon is gone
    return {};
  }
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || peer.uid != ::geteuid()) {
    log::verbose("pool: the daemon at {} is not this user's; running without the pool", path.string());
    return {};
  }
  return fd;
}

bool pool_enabled() {
  return !env_flag("KILN_NO_POOL");
}

std::unique_ptr<vmm::Vm> take_pooled_vm(const vmm::Engine& engine, const vmm::GuestSpec& spec,
                                        const vmm::SnapshotFiles& files, const std::string& label) {
  if (!pool_enabled() || (engine.name() != "qemu" && engine.name() != "kvm")) return nullptr;
  log::ScopedTimer timer("pool: take a VM");
  auto path = pool::socket_path();
  if (!path) {
    log::verbose("pool: {}; running without the pool", path.error().message);
    return nullptr;
  }
  auto request = pool_request(engine, spec, files, label);
  if (!request) return nullptr;
  const std::string take = pool::encode_take(*request);
  bool start = false;
  UniqueFd conn = connect_pool_daemon(*path, &start);
  if (!conn) {
    // Started now, it has no VM for this run; it learns the restore point from `take`.
    if (start) start_daemon(*path, take);
    return nullptr;
  }
  if (auto sent = send_fd_message(conn.get(), take); !sent) {
    log::verbose("pool: {}", sent.error().message);
    return nullptr;
  }
  auto answer = receive_fd_message(conn.get(), pool::kMaxMessageBytes, pool::kHandoverFds,
                                   deadline_after(kAnswerTimeout));
  if (!answer || !*answer) {
    log::verbose("pool: no answer from the daemon: {}", answer ? "it closed the connection" : answer.error().message);
    return nullptr;
  }
  auto vm = adopt(std::move(**answer), std::move(conn), engine.name());
  if (!vm) {
    log::verbose("pool: no VM for {}: {}", label, vm.error().message);
    return nullptr;
  }
  log::verbose("pool: took a VM restored at {}", label);
  return std::move(*vm);
}

}  // namespace kiln::runner
