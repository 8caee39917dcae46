#include "agent/share_plan.h"

#include "agent/log.h"

namespace kiln::agent {

namespace {

// `inner` is `outer` or lies below it (both absolute, without trailing "/").
bool is_within(std::string_view inner, std::string_view outer) {
  if (outer == "/") return true;
  return inner.starts_with(outer) && (inner.size() == outer.size() || inner[outer.size()] == '/');
}

Status check_root(const std::string& root) {
  if (root == "/") return Status::fail("cannot share onto / in the guest: share a directory below it");
  if (root.ends_with('/')) return Status::fail(cat("share root ", root, " ends in '/': kiln sends normalized paths"));
  if (is_within(root, kShareRunDir) || is_within(kShareRunDir, root))
    return Status::fail(cat("cannot share onto ", root, ": the agent keeps the share's own mounts in ", kShareRunDir));
  return Status::ok();
}

}  // namespace

RootDirs root_dirs(size_t index) {
  const std::string i = std::to_string(index);
  return RootDirs{cat(kShareFuseDir, "/", i), cat(kShareLowerDir, "/", i), cat(kShareUpperDir, "/", i, "/u"),
                  cat(kShareUpperDir, "/", i, "/w")};
}

Status check_share_roots(const std::vector<std::string>& roots) {
  if (roots.empty()) return Status::fail("a share request with no roots");
  for (size_t i = 0; i < roots.size(); ++i) {
    Status s = check_root(roots[i]);
    if (!s.is_ok()) return s;
    for (size_t j = 0; j < i; ++j) {
      if (roots[i] == roots[j]) return Status::fail(cat("share root ", roots[i], " is listed twice"));
      if (is_within(roots[i], roots[j]) || is_within(roots[j], roots[i])) {
        // Different, and one within the other: the longer is the inner one.
        const bool i_inner = roots[i].size() > roots[j].size();
        return Status::fail(cat("share root ", i_inner ? roots[i] : roots[j], " lies inside share root ",
                                i_inner ? roots[j] : roots[i], ": kiln shares only the outer one"));
      }
    }
  }
  return Status::ok();
}

std::string fuse_mount_data(int fuse_fd) {
  // rootmode is octal: 40000 is S_IFDIR.
  return cat("fd=", fuse_fd, ",rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions");
}

std::string overlay_mount_data(const RootDirs& dirs, bool payload_lower) {
  // The leftmost lower layer is the top one: what the payload placed hides the host's copy.
  std::string lower = payload_lower ? cat(dirs.lower, ":", dirs.shared) : dirs.shared;
  return cat("lowerdir=", lower, ",upperdir=", dirs.upper, ",workdir=", dirs.work);
}

}  // namespace kiln::agent
