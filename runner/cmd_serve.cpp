// `kiln serve`: the warm pool daemon, and `kiln serve --status` (docs/pool.md).
#include "common/fd_passing.h"
#include "common/log.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "runner/pool_client.h"
#include "runner/pool_kvm_worker.h"
#include "runner/pool_protocol.h"
#include "runner/pool_server.h"

#include <memory>

namespace kiln::runner {
namespace {

struct ServeCliOptions {
  bool status = false;
  std::string kvm_worker;  // internal: the state file a worker restores (for `ps`)
  uint32_t idle_s = 60;
  pool::ServeOptions serve;
};

int print_status() {
  auto path = pool::socket_path();
  if (!path) {
    log::error(path.error().message);
    return exit_code::kiln_error;
  }
  bool absent = false;
  UniqueFd fd = connect_pool_daemon(*path, &absent);
  if (!fd) {
    std::printf("no pool daemon for this cache and kiln (%s): the next kiln run starts one\n", path->c_str());
    return 0;
  }
  auto answer = [&]() -> Result<pool::PoolStatus> {
    KILN_TRY(send_fd_message(fd.get(), R"({"op":"status"})"));
    KILN_ASSIGN_OR_RETURN(auto message,
                          receive_fd_message(fd.get(), pool::kMaxMessageBytes, 0, deadline_after(std::chrono::seconds(5))));
    if (!message) return make_error("the daemon closed the connection");
    return pool::decode_status(message->bytes);
  }();
  if (!answer) {
    log::error("pool daemon at " + path->string() + ": " + answer.error().message);
    return exit_code::kiln_error;
  }
  const auto& s = *answer;
  std::printf("pool daemon pid %lld, up %llds, socket %s\n", static_cast<long long>(s.pid),
              static_cast<long long>(s.uptime_s), path->c_str());
  std::printf("VMs ready %llu (at most %llu), lent to runs %llu; hits %llu, misses %llu\n",
              static_cast<unsigned long long>(s.ready), static_cast<unsigned long long>(s.max_ready),
              static_cast<unsigned long long>(s.lent), static_cast<unsigned long long>(s.hits),
              static_cast<unsigned long long>(s.misses));
  if (!s.pools.empty()) std::printf("%-34s %6s %6s %6s\n", "RESTORE POINT", "READY", "HITS", "MISSES");
  for (const auto& p : s.pools)
    std::printf("%-34s %6llu %6llu %6llu\n", p.label.c_str(), static_cast<unsigned long long>(p.ready),
                static_cast<unsigned long long>(p.hits), static_cast<unsigned long long>(p.misses));
  return 0;
}

}  // namespace

void register_serve(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<ServeCliOptions>();
  auto* cmd = app.add_subcommand(
      "serve", "Run the warm pool daemon: VMs restored ahead of the runs that take them (kiln run starts it; "
               "KILN_NO_POOL=1 turns the pool off)");
  cmd->add_flag("--status", o->status, "Show the running daemon's pools, hits and misses, and exit");
  cmd->add_option("--idle", o->idle_s, "Exit after this many seconds with no run")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  cmd->add_option("--per-restore-point", o->serve.per_key, "Ready VMs kept per restore point")
      ->check(CLI::Range(1u, 16u))
      ->capture_default_str();
  cmd->add_option("--max-ready", o->serve.max_ready, "Ready VMs at most (0: 8); fewer when memory is short")
      ->check(CLI::Range(0u, 256u));
  // Internal: the daemon starts one such process per pooled VM of the kvm engine.
  cmd->add_option("--kvm-worker", o->kvm_worker, "Internal: hold one pooled kvm VM (started by the daemon)")
      ->group("");
  // Internal: a run that starts the daemon leaves its take on this descriptor.
  cmd->add_option("--first-take-fd", o->serve.first_take_fd, "Internal: the take of the run that started the daemon")
      ->check(CLI::Range(pool::kFirstTakeFd, pool::kFirstTakeFd))
      ->group("");
  cmd->callback([o, &exit_code] {
    if (!o->kvm_worker.empty()) {
      exit_code = pool::run_kvm_worker();
      return;
    }
    if (o->status) {
      exit_code = print_status();
      return;
    }
    o->serve.idle = std::chrono::seconds(o->idle_s);
    exit_code = pool::serve(o->serve);
  });
}

}  // namespace kiln::runner
