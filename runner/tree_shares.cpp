#include "runner/tree_shares.h"

#include "common/fs.h"
#include "common/log.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace kiln::runner {
namespace {

/// Every node the guest holds open is one host fd: let kiln use as many as it may.
void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
    log::verbose("cannot raise the open file limit for the share: {}", std::strerror(errno));
}

}  // namespace

Result<std::vector<std::string>> share_roots(const std::vector<std::string>& dirs) {
  std::vector<std::filesystem::path> roots;
  for (const auto& dir : dirs) {
    std::error_code ec;
    auto path = std::filesystem::absolute(dir, ec).lexically_normal();
    if (!path.has_filename() && path != path.root_path()) path = path.parent_path();
    if (ec || !std::filesystem::is_directory(path, ec))
      return make_error("--share {}: no such directory on the host", dir);
    if (path == path.root_path()) return make_error("--share {}: sharing the host's whole / is refused", dir);
    roots.push_back(path);
  }
  std::vector<std::string> kept;
  for (const auto& root : roots) {
    bool covered =
        std::ranges::any_of(roots, [&](const auto& other) { return other != root && fs::is_within(root, other); });
    bool repeated = std::ranges::find(kept, root.string()) != kept.end();
    if (!covered && !repeated) kept.push_back(root.string());
  }
  return kept;
}

Result<std::unique_ptr<share::ShareServer>> serve_shares(vmm::Vm& vm, const std::vector<std::string>& roots,
                                                         std::string_view resume_state) {
  if (roots.empty()) return std::unique_ptr<share::ShareServer>{};
  if (vm.share_fd() < 0) return make_error("this VM engine has no share port: run with --no-share");
  int fd = ::fcntl(vm.share_fd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return make_error("cannot serve the share: {}", std::strerror(errno));
  raise_fd_limit();
  std::vector<std::filesystem::path> paths(roots.begin(), roots.end());
  return share::ShareServer::start(UniqueFd(fd), std::move(paths), {}, resume_state);
}

void report_share(const share::ShareServer& server) {
  auto stats = server.stats();
  log::verbose("share: {} requests, {} KiB of requests", stats.requests, stats.bytes_read >> 10);
  if (!stats.failure.empty())
    log::info("the share of the host's trees stopped early: {}; reads of shared files in the guest failed after "
              "that",
              stats.failure);
}

}  // namespace kiln::runner
