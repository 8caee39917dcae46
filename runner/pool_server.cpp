#include "runner/pool_server.h"

#include "common/fd_passing.h"
#include "common/fs.h"
#include "common/log.h"
#include "runner/host_memory.h"
#include "runner/interrupt.h"
#include "runner/pool_kvm_worker.h"
#include "runner/pool_protocol.h"
#include "runner/pool_ready_vm.h"
#include "vmm/qemu/qemu_engine.h"

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace kiln::runner::pool {
namespace {

using nlohmann::json;
using vmm::qemu::QemuEngine;

constexpr std::chrono::milliseconds kTick{250};
/// Ready VMs of a restore point no run asked for in this long are let go: the suite has
/// moved on to other test executables.
constexpr std::chrono::seconds kKeyTtl{30};
/// Headroom a refill leaves in MemAvailable beyond the new VM's guest RAM.
constexpr uint64_t kHeadroomMib = 512;

struct Pool {
  PoolRequest request;
  std::deque<std::unique_ptr<ReadyVm>> ready;  ///< restored, waiting to run
  uint64_t hits = 0, misses = 0;
  Clock::time_point last_take;
  bool restoring = false;
  std::string broken;  // why restoring for this key failed: it is not tried again
};

struct Client {
  UniqueFd conn;
  std::unique_ptr<ReadyVm> lent;  // killed when the connection closes
};

class Server {
 public:
  Server(const ServeOptions& options, UniqueFd listener, UniqueFd first_take)
      : options_(options), listener_(std::move(listener)) {
    if (options_.max_ready == 0) options_.max_ready = 8;
    if (first_take) clients_.push_back(Client{std::move(first_take), nullptr});
  }
  int run();

 private:
  void refill_loop();
  std::optional<std::string> pick_refill(Clock::time_point now);
  void restore_one(const std::string& key);
  Result<std::unique_ptr<ReadyVm>> restore_qemu(const PoolRequest& request);
  QemuEngine* engine_for(const std::string& accel);
  void accept_client();
  bool serve_message(Client& client);
  bool take(Client& client, const std::string& message);
  std::string status() const;
  void housekeeping(Clock::time_point now);
  size_t ready_total() const;

  ServeOptions options_;
  UniqueFd listener_;
  std::vector<Client> clients_;
  Clock::time_point started_ = Clock::now();
  Clock::time_point last_activity_ = Clock::now();
  uint64_t hits_ = 0, misses_ = 0;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<std::string, Pool> pools_;  // by PoolRequest::key()
  // Used by the refill thread only: it starts every qemu and kvm worker, and as it lives as long as the
  // daemon, PR_SET_PDEATHSIG (bound to the spawning thread) fires only when the daemon dies.
  std::map<std::string, std::unique_ptr<QemuEngine>> engines_;
};

size_t Server::ready_total() const {
  size_t n = 0;
  for (const auto& [key, p] : pools_) n += p.ready.size();
  return n;
}

// The refill to do next: the most recently asked-for restore point that is short of VMs,
// if memory allows one more. Called with mu_ held.
std::optional<std::string> Server::pick_refill(Clock::time_point now) {
  const std::string* best = nullptr;
  Clock::time_point best_take{};
  for (auto& [key, p] : pools_) {
    if (!p.broken.empty() || p.restoring || p.ready.size() >= options_.per_key) continue;
    if (now - p.last_take > kKeyTtl) continue;
    if (!best || p.last_take > best_take) best = &key, best_take = p.last_take;
  }
  if (!best) return std::nullopt;
  if (ready_total() >= options_.max_ready) {
    // Full: make room by letting go of the VM whose restore point was asked for least recently.
    Pool* oldest = nullptr;
    for (auto& [key, p] : pools_)
      if (!p.ready.empty() && key != *best && (!oldest || p.last_take < oldest->last_take)) oldest = &p;
    if (!oldest || oldest->last_take >= best_take) return std::nullopt;
    oldest->ready.pop_front();
  }
  auto available = mem_available_mib();
  if (!available || *available < pools_.at(*best).request.spec.memory_mib + kHeadroomMib) return std::nullopt;
  return *best;
}

QemuEngine* Server::engine_for(const std::string& accel) {
  auto& engine = engines_[accel];
  if (!engine) {
    vmm::EngineOptions options;
    options.name = "qemu";
    options.accel = accel;
    auto made = QemuEngine::create(options);
    if (!made) {
      log::info("pool: cannot make the qemu engine ({}): {}", accel, made.error().message);
      engines_.erase(accel);
      return nullptr;
    }
    engine = std::move(*made);
  }
  return engine.get();
}

Result<std::unique_ptr<ReadyVm>> Server::restore_qemu(const PoolRequest& request) {
  QemuEngine* engine = engine_for(request.accel);
  if (!engine) return make_error("no qemu engine");
  if (engine->identity() != request.engine_identity)
    return make_error("the daemon's engine is {}, the run's {}", engine->identity(), request.engine_identity);
  auto identity = files_identity(request.files);
  if (!identity || *identity != request.files_identity) return make_error("the snapshot was replaced or removed");
  KILN_ASSIGN_OR_RETURN(auto vm, engine->restore_paused(request.spec, request.files));
  return ready_qemu_vm(std::move(vm));
}

void Server::restore_one(const std::string& key) {
  PoolRequest request;
  {
    std::lock_guard lock(mu_);
    request = pools_.at(key).request;
  }
  auto vm = request.engine == "kvm" ? start_kvm_worker(request) : restore_qemu(request);
  std::lock_guard lock(mu_);
  Pool& p = pools_.at(key);
  p.restoring = false;
  if (vm) {
    p.ready.push_back(std::move(*vm));
  } else {
    p.broken = vm.error().message;
    log::info("pool: {}: not restoring more VMs: {}", p.request.label, p.broken);
  }
}

void Server::refill_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    auto key = pick_refill(Clock::now());
    if (!key) {
      wake_.wait_for(lock, kTick);
      continue;
    }
    pools_.at(*key).restoring = true;
    lock.unlock();
    restore_one(*key);
    lock.lock();
  }
  // Stop every ready VM from this thread, the one that started them.
  pools_.clear();
}

void Server::accept_client() {
  UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn) return;
  ucred peer{};
  socklen_t len = sizeof peer;
  // The socket is 0600 in a 0700 directory; still, serve only this user.
  if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || peer.uid != ::geteuid()) return;
  clients_.push_back(Client{std::move(conn), nullptr});
}

bool Server::take(Client& client, const std::string& message) {
  auto miss = [&](const std::string& why) {
    return send_fd_message(client.conn.get(), json{{"hit", false}, {"why", why}}.dump()).ok();
  };
  if (client.lent) return miss("this connection already has a VM");
  auto request = decode_take(message);
  if (!request) return miss(request.error().message);
  const std::string key = request->key();
  std::lock_guard lock(mu_);
  auto [it, inserted] = pools_.try_emplace(key);
  Pool& p = it->second;
  if (inserted) p.request = *request;
  p.last_take = Clock::now();
  wake_.notify_all();
  // Never a VM from a snapshot that has since been replaced: its files are the same ones.
  auto identity = files_identity(request->files);
  if (!identity || *identity != p.request.files_identity) p.ready.clear();
  while (!p.ready.empty()) {
    std::unique_ptr<ReadyVm> vm = std::move(p.ready.front());
    p.ready.pop_front();
    if (vm->exited()) continue;
    if (auto sent = vm->hand_over(client.conn.get()); !sent) {
      log::verbose("pool: {}: a ready VM could not be handed over: {}", p.request.label, sent.error().message);
      continue;  // it dies with `vm`; a closed connection fails the miss below too
    }
    client.lent = std::move(vm);
    ++p.hits;
    ++hits_;
    return true;
  }
  ++p.misses;
  ++misses_;
  return miss(p.broken.empty() ? "no VM ready yet" : p.broken);
}

std::string Server::status() const {
  PoolStatus s;
  s.pid = ::getpid();
  s.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count();
  s.hits = hits_;
  s.misses = misses_;
  s.max_ready = options_.max_ready;
  for (const auto& c : clients_) s.lent += c.lent ? 1 : 0;
  std::lock_guard lock(mu_);
  s.ready = ready_total();
  for (const auto& [key, p] : pools_) s.pools.push_back(PoolStats{p.request.label, p.ready.size(), p.hits, p.misses});
  return encode_status(s);
}

// One message from a run; false when the connection is done (closed, or unusable).
bool Server::serve_message(Client& client) {
  auto message = receive_fd_message(client.conn.get(), kMaxMessageBytes, 0, deadline_after(std::chrono::seconds(1)));
  if (!message || !*message) return false;
  last_activity_ = Clock::now();
  auto op = message_op((*message)->bytes);
  if (!op) return false;
  if (*op == "status") return send_fd_message(client.conn.get(), status()).ok();
  return take(client, (*message)->bytes);
}

void Server::housekeeping(Clock::time_point now) {
  std::lock_guard lock(mu_);
  for (auto& [key, p] : pools_)
    if (now - p.last_take > kKeyTtl) p.ready.clear();
  // Memory pressure: give back one ready VM per tick while under a tenth of RAM is free.
  auto available = mem_available_mib();
  auto total = meminfo_mib("MemTotal");
  if (available && total && *available < *total / 10) {
    for (auto& [key, p] : pools_)
      if (!p.ready.empty()) {
        p.ready.pop_front();
        break;
      }
  }
}

int Server::run() {
  std::thread refiller([this] { refill_loop(); });
  while (!interrupt::received()) {
    std::vector<pollfd> fds = {{listener_.get(), POLLIN, 0}, {interrupt::fd(), POLLIN, 0}};
    for (const auto& c : clients_) fds.push_back({c.conn.get(), POLLIN, 0});
    int r = ::poll(fds.data(), fds.size(), static_cast<int>(kTick.count()));
    if (r < 0 && errno != EINTR) break;
    const auto now = Clock::now();
    if (r > 0) {
      // Walk the clients back to front: a closed one is erased, and its lent VM killed.
      for (size_t i = clients_.size(); i-- > 0;) {
        if (fds[i + 2].revents == 0) continue;
        if (!serve_message(clients_[i])) clients_.erase(clients_.begin() + static_cast<long>(i));
      }
      if (fds[0].revents & POLLIN) accept_client();
    }
    housekeeping(now);
    if (clients_.empty() && now - last_activity_ > options_.idle) break;
  }
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  refiller.join();
  clients_.clear();
  return 0;
}

// The directory of the socket: created 0700, and refused if another user owns it or
// others can write to it.
Result<void> prepare_socket_dir(const std::filesystem::path& dir) {
  KILN_TRY(fs::make_dirs(dir));
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return make_error("cannot stat {}: {}", dir.string(), std::strerror(errno));
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022))
    return make_error("{} is not a directory of this user that only it can write to", dir.string());
  if ((st.st_mode & 077) && ::chmod(dir.c_str(), 0700) != 0)
    return make_error("cannot make {} private: {}", dir.string(), std::strerror(errno));
  return {};
}

Result<UniqueFd> listen_on(const std::filesystem::path& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return make_error("cannot make a socket: {}", std::strerror(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.native().size() + 1);
  ::unlink(path.c_str());  // a stale socket of a daemon that died: we hold the lock now
  mode_t old = ::umask(077);
  int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int bind_errno = errno;
  ::umask(old);
  if (bound != 0) return make_error("cannot listen on {}: {}", path.string(), std::strerror(bind_errno));
  if (::listen(fd.get(), 64) != 0) return make_error("cannot listen on {}: {}", path.string(), std::strerror(errno));
  return fd;
}

// The daemon a run started writes to <socket>.log (opened for appending: a run that
// started a second daemon, which leaves at once, must not cut the first one's lines);
// the daemon that serves starts it afresh, so it holds one daemon's life.
void truncate_own_log(const std::filesystem::path& socket) {
  struct stat err {}, log {};
  const auto log_path = socket.string() + ".log";
  if (::fstat(STDERR_FILENO, &err) == 0 && ::stat(log_path.c_str(), &log) == 0 && err.st_dev == log.st_dev &&
      err.st_ino == log.st_ino)
    (void)!::ftruncate(STDERR_FILENO, 0);
}

// Does `fd` (a lock we hold) still have `path` as its name? A daemon that tidied the
// directory may have removed it between our open and our flock.
bool still_named(int fd, const std::string& path) {
  struct stat held {}, named {};
  return ::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
         held.st_ino == named.st_ino;
}

// Files other daemons left in `dir`: each kiln build and cache has a socket name of its
// own (socket_path), so every rebuilt kiln leaves a lock file and a log behind. A lock
// nobody holds whose log was last written over a day ago is removed with its log and
// socket, under that lock (a daemon starting for it now finds it held, or renamed: it
// leaves, and the next run starts one with fresh files).
void remove_stale_files(const std::filesystem::path& dir, const std::string& own_lock) {
  constexpr std::string_view kLockSuffix = ".sock.lock";
  const auto stale_before = std::chrono::system_clock::now() - std::chrono::hours(24);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string lock_path = entry.path().string();
    const std::string name = entry.path().filename().string();
    if (lock_path == own_lock || !name.starts_with("pool-") || !name.ends_with(kLockSuffix)) continue;
    const std::string socket = lock_path.substr(0, lock_path.size() - std::string_view(".lock").size());
    struct stat log_st {};
    const bool has_log = ::lstat((socket + ".log").c_str(), &log_st) == 0;
    struct stat lock_st {};
    if (::lstat(lock_path.c_str(), &lock_st) != 0 || !S_ISREG(lock_st.st_mode)) continue;
    const timespec last = has_log ? log_st.st_mtim : lock_st.st_mtim;
    if (std::chrono::system_clock::from_time_t(last.tv_sec) > stale_before) continue;
    UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 || !still_named(fd.get(), lock_path)) continue;
    ::unlink(socket.c_str());
    ::unlink((socket + ".log").c_str());
    ::unlink(lock_path.c_str());  // last, while we still hold it
    log::verbose("pool: removed the files of a daemon gone since {}", lock_path);
  }
}

// The connection the run that started us left its take on: ours only if it is a
// socket pair's end of this kind, and never inherited by the VMs we start.
UniqueFd adopt_first_take(int fd) {
  if (fd < 0) return {};
  UniqueFd conn(fd);
  int type = 0;
  socklen_t len = sizeof type;
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
      type != SOCK_SEQPACKET)
    return {};
  return conn;
}

}  // namespace

int serve(const ServeOptions& options) {
  UniqueFd first_take = adopt_first_take(options.first_take_fd);
  auto path = socket_path();
  if (!path) {
    log::error("kiln serve: " + path.error().message);
    return 125;
  }
  if (auto dir = prepare_socket_dir(path->parent_path()); !dir) {
    log::error("kiln serve: " + dir.error().message);
    return 125;
  }
  // One daemon per socket: the lock is held for the daemon's life, so a second one (two
  // runs starting it at once) sees it taken and leaves.
  auto lock_path = path->string() + ".lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock) {
    log::error(fmt::format("kiln serve: cannot open {}: {}", lock_path, std::strerror(errno)));
    return 125;
  }
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0 || !still_named(lock.get(), lock_path)) {
    // Two runs started a daemon at once; the one serving learns this run's restore
    // point when a run next asks for it.
    log::verbose("kiln serve: a daemon already serves {}", path->string());
    return 0;
  }
  truncate_own_log(*path);
  remove_stale_files(path->parent_path(), lock_path);
  auto listener = listen_on(*path);
  if (!listener) {
    log::error("kiln serve: " + listener.error().message);
    return 125;
  }
  log::info("pool: serving {} (pid {})", path->string(), ::getpid());
  Server server(options, std::move(*listener), std::move(first_take));
  int rc = server.run();
  ::unlink(path->c_str());  // still under the lock: no new daemon has bound it yet
  log::info("pool: stopped");
  return rc;
}

}  // namespace kiln::runner::pool
