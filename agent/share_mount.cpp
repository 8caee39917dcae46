#include "agent/share_mount.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "agent/fs_util.h"
#include "agent/fuse_relay.h"
#include "agent/log.h"
#include "agent/share_plan.h"
#include "agent/virtio_port.h"
#include "common/clock.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

constexpr int kHostWaitMs = 10'000;
constexpr const char* kFuseDevice = "/dev/fuse";

// What a missing module looks like, said so the user knows where to look.
std::string module_hint(int err, const char* module) {
  if (err != ENOENT && err != ENODEV) return {};
  return cat(" (is the guest kernel's ", module, " module loaded? the guest console lists the modules it could not load)");
}

// A port whose host end is closed polls hung up and takes no writes: wait for kiln.
Status wait_for_host(int port_fd, const std::string& path) {
  const Deadline deadline = deadline_after(std::chrono::milliseconds(kHostWaitMs));
  for (;;) {
    pollfd pfd{port_fd, POLLOUT, 0};
    const int r = ::poll(&pfd, 1, poll_timeout_ms(deadline));
    if (r < 0 && errno != EINTR) return Status::fail(sys_error(cat("poll on the share port ", path)));
    if (r > 0 && (pfd.revents & POLLOUT) != 0 && (pfd.revents & POLLHUP) == 0) return Status::ok();
    if (Clock::now() >= deadline)
      return Status::fail(cat("nothing is connected to the host end of the share port ", path, " (waited ",
                              kHostWaitMs / 1000, " s): kiln must serve the share before it sends the request"));
    if (r > 0) ::usleep(20'000);  // hung up: poll returns at once, so back off
  }
}

Status open_share_port(UniqueFd& port) {
  const std::string path = find_virtio_port(proto::kSharePortName);
  if (path.empty())
    return Status::fail(cat("the guest has no virtio-serial port named ", proto::kSharePortName,
                            ": the VM was started without the share port (a golden snapshot baked before shares?)"));
  port.reset(::open(path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  if (!port) return Status::fail(sys_error(cat("cannot open the share port ", path)));
  return wait_for_host(port.get(), path);
}

Status make_share_dirs() {
  for (std::string_view dir : {kShareFuseDir, kShareUpperDir, kShareLowerDir}) {
    Status s = mkdir_p(std::string(dir), 0755);
    if (!s.is_ok()) return s;
  }
  return Status::ok();
}

Status mount_fuse(UniqueFd& fuse) {
  fuse.reset(::open(kFuseDevice, O_RDWR | O_CLOEXEC));
  if (!fuse) {
    const int err = errno;
    return Status::fail(cat("cannot open ", kFuseDevice, ": ", errno_text(err), module_hint(err, "fuse")));
  }
  const std::string target(kShareFuseDir);
  if (::mount("kiln-share", target.c_str(), "fuse", MS_RDONLY | MS_NOSUID | MS_NODEV,
              fuse_mount_data(fuse.get()).c_str()) != 0) {
    const int err = errno;
    return Status::fail(cat("mount fuse on ", target, ": ", errno_text(err), module_hint(err, "fuse")));
  }
  return Status::ok();
}

Status mount_upper_tmpfs() {
  const std::string target(kShareUpperDir);
  // No nosuid/nodev: what the test creates in its tree behaves as it would on the host.
  if (::mount("tmpfs", target.c_str(), "tmpfs", 0, "mode=0755") != 0)
    return Status::fail(sys_error(cat("mount tmpfs on ", target)));
  return Status::ok();
}

// The root's own directory in the guest: the payload's, bound to dirs.lower to be the
// overlay's top lower layer (*payload_lower), or a new empty one.
Status prepare_root_dir(const std::string& root, const RootDirs& dirs, bool* payload_lower) {
  *payload_lower = false;
  struct stat st {};
  if (::stat(root.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::fail(sys_error(cat("cannot share onto ", root, ": stat")));
    return mkdir_p(root, 0755);
  }
  if (!S_ISDIR(st.st_mode))
    return Status::fail(cat("cannot share onto ", root, ": it exists in the guest and is not a directory"));
  Status s = mkdir_p(dirs.lower, 0755);
  if (!s.is_ok()) return s;
  if (::mount(root.c_str(), dirs.lower.c_str(), nullptr, MS_BIND, nullptr) != 0)
    return Status::fail(sys_error(cat("bind-mount ", root, " on ", dirs.lower)));
  *payload_lower = true;
  return Status::ok();
}

Status mount_root(size_t index, const std::string& root) {
  const RootDirs dirs = root_dirs(index);
  bool payload_lower = false;
  Status s = prepare_root_dir(root, dirs, &payload_lower);
  if (s.is_ok()) s = mkdir_p(dirs.upper, 0755);
  if (s.is_ok()) s = mkdir_p(dirs.work, 0755);
  if (!s.is_ok()) return s;
  // Blocks until the host answers the overlay's lookups of dirs.shared through the relay.
  if (::mount("overlay", root.c_str(), "overlay", 0, overlay_mount_data(dirs, payload_lower).c_str()) != 0) {
    const int err = errno;
    return Status::fail(cat("mount overlay on ", root, ": ", errno_text(err), module_hint(err, "overlay")));
  }
  log("shared ", root, payload_lower ? " (under the payload's files there)" : "");
  return Status::ok();
}

}  // namespace

Status mount_shares(const proto::Share& req) {
  Status s = check_share_roots(req.roots);
  UniqueFd port;
  UniqueFd fuse;
  if (s.is_ok()) s = open_share_port(port);
  if (s.is_ok()) s = make_share_dirs();
  if (s.is_ok()) s = mount_fuse(fuse);
  // The kernel has queued FUSE_INIT; from here on only the relay answers it.
  if (s.is_ok()) s = start_fuse_relay(std::move(fuse), std::move(port));
  if (s.is_ok()) s = mount_upper_tmpfs();
  for (size_t i = 0; s.is_ok() && i < req.roots.size(); ++i) s = mount_root(i, req.roots[i]);
  return s;
}

}  // namespace kiln::agent
