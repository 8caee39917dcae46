#include "agent/image_root.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "agent/fs_util.h"
#include "agent/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

constexpr const char* kLowerDir = "/kiln/image";     // the squashfs, read-only
constexpr const char* kWritableDir = "/kiln/rw";     // tmpfs: the overlay's upper and work dirs
constexpr const char* kNewRoot = "/kiln/root";       // the overlay: the image as the guest sees it
constexpr int kDiskWaitMs = 5'000;

// Mounts the agent made at boot that the image root must keep (mount_basics), moved, not remounted.
constexpr const char* kMovedMounts[] = {"/dev", "/proc", "/sys", "/run", "/tmp"};

// Files the default guest has that make names and users resolve (image/initramfs.cpp);
// an image gets each only where it has none of its own.
constexpr const char* kBaseFiles[] = {"/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/resolv.conf",
                                      "/etc/passwd", "/etc/group"};
// The guest's name is the agent's (it set the kernel's from the initramfs's): an
// image's /etc/hostname names whatever machine built it, so kiln's replaces it, as a
// container runtime's does; and /etc/hosts gets kiln's entries for names it lacks.
constexpr const char* kHostnameFile = "/etc/hostname";
constexpr const char* kHostsFile = "/etc/hosts";

std::string wait_for_disk(const std::string& device) {
  for (int waited = 0; waited < kDiskWaitMs; waited += 10) {
    struct stat st {};
    if (::stat(device.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) return {};
    ::usleep(10'000);
  }
  return cat(device, " did not appear within ", kDiskWaitMs / 1000,
             " s (is virtio_blk loaded and the image attached as the first disk?)");
}

std::string mount_or_error(const char* source, const char* target, const char* fstype, unsigned long flags,
                           const std::string& data) {
  Status s = mkdir_p(target, 0755);
  if (!s.is_ok()) return s.message();
  if (::mount(source, target, fstype, flags, data.empty() ? nullptr : data.c_str()) != 0)
    return sys_error(cat("mount ", fstype, " ", source, " on ", target));
  return {};
}

std::string mount_layers(const std::string& device) {
  if (auto e = mount_or_error(device.c_str(), kLowerDir, "squashfs", MS_RDONLY | MS_NODEV, ""); !e.empty())
    return cat(e, " (is the squashfs module loaded? the console lists modules that failed)");
  if (auto e = mount_or_error("tmpfs", kWritableDir, "tmpfs", MS_NODEV, "mode=0755"); !e.empty()) return e;
  for (const char* dir : {"/kiln/rw/upper", "/kiln/rw/work"})
    if (Status s = mkdir_p(dir, 0755); !s.is_ok()) return s.message();
  const std::string options = cat("lowerdir=", kLowerDir, ",upperdir=/kiln/rw/upper,workdir=/kiln/rw/work");
  return mount_or_error("overlay", kNewRoot, "overlay", 0, options);
}

std::string read_small(const std::string& path, std::string& out) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return sys_error(cat("open ", path));
  char buffer[4096];
  out.clear();
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(cat("read ", path));
    if (n == 0) return {};
    out.append(buffer, static_cast<size_t>(n));
    if (out.size() > (1u << 20)) return cat(path, " is larger than 1 MiB");
  }
}

// Copies `path` (a small /etc file) from the initramfs into the image root unless the
// image has it (any kind of entry, a dangling symlink included, counts as having it).
std::string add_base_file(const char* path) {
  const std::string dest = cat(kNewRoot, path);
  struct stat st {};
  if (::lstat(dest.c_str(), &st) == 0) return {};
  std::string text;
  if (::access(path, F_OK) != 0) return {};  // the initramfs lacks it too
  if (auto e = read_small(path, text); !e.empty()) return e;
  if (Status s = mkdir_p(parent_dir(dest), 0755); !s.is_ok()) return s.message();
  UniqueFd out(::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!out) return sys_error(cat("create ", dest));
  Status s = write_all(out.get(), text.data(), text.size(), dest);
  return s.is_ok() ? std::string() : s.message();
}

// Replaces (or creates) `path` with `text`; a symlink there is replaced, not followed.
std::string write_small(const std::string& path, const std::string& text) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return sys_error(cat("remove ", path));
  UniqueFd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!out) return sys_error(cat("create ", path));
  Status s = write_all(out.get(), text.data(), text.size(), path);
  return s.is_ok() ? std::string() : s.message();
}

std::string set_hostname_file() {
  std::string name;
  if (auto e = read_small(kHostnameFile, name); !e.empty()) return e;
  return write_small(cat(kNewRoot, kHostnameFile), name);
}

bool has_name(const std::string& hosts, const std::string& name) {
  size_t pos = 0;
  while (pos < hosts.size()) {
    size_t end = hosts.find('\n', pos);
    if (end == std::string::npos) end = hosts.size();
    std::string line = hosts.substr(pos, end - pos);
    line = line.substr(0, line.find('#'));
    size_t f = 0;
    bool first = true;  // the address
    while ((f = line.find_first_not_of(" \t", f)) != std::string::npos) {
      size_t e = line.find_first_of(" \t", f);
      if (!first && line.compare(f, e == std::string::npos ? std::string::npos : e - f, name) == 0) return true;
      first = false;
      f = e;
    }
    pos = end + 1;
  }
  return false;
}

// The image's /etc/hosts, plus each line of kiln's that names a host the image's does not.
std::string merge_hosts() {
  std::string ours, theirs;
  if (auto e = read_small(kHostsFile, ours); !e.empty()) return e;
  const std::string dest = cat(kNewRoot, kHostsFile);
  if (auto e = read_small(dest, theirs); !e.empty()) return {};  // a symlink or unreadable: left as the image has it
  std::string added;
  size_t pos = 0;
  while (pos < ours.size()) {
    size_t end = ours.find('\n', pos);
    if (end == std::string::npos) end = ours.size();
    const std::string line = ours.substr(pos, end - pos);
    size_t name_at = line.find_first_of(" \t");
    name_at = name_at == std::string::npos ? name_at : line.find_first_not_of(" \t", name_at);
    if (name_at != std::string::npos) {
      std::string name = line.substr(name_at, line.find_first_of(" \t", name_at) - name_at);
      if (!has_name(theirs, name)) added += line + "\n";
    }
    pos = end + 1;
  }
  if (added.empty()) return {};
  if (!theirs.empty() && theirs.back() != '\n') theirs += '\n';
  return write_small(dest, theirs + "# added by kiln: names this guest resolves\n" + added);
}

std::string move_mounts() {
  for (const char* mount_point : kMovedMounts) {
    const std::string target = cat(kNewRoot, mount_point);
    if (Status s = mkdir_p(target, 0755); !s.is_ok()) return s.message();
    if (::mount(mount_point, target.c_str(), nullptr, MS_MOVE, nullptr) != 0)
      return sys_error(cat("move the ", mount_point, " mount into the image root"));
  }
  return {};
}

// switch_root's move: the overlay becomes "/" (the initramfs stays underneath, unreachable).
std::string switch_to_new_root() {
  if (::chdir(kNewRoot) != 0) return sys_error(cat("chdir ", kNewRoot));
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) return sys_error("move the image root onto /");
  if (::chroot(".") != 0) return sys_error("chroot into the image root");
  if (::chdir("/") != 0) return sys_error("chdir / in the image root");
  return {};
}

}  // namespace

std::string image_disk_from_cmdline(std::string_view cmdline) {
  constexpr std::string_view kKey = "kiln.image=";
  size_t pos = 0;
  while (pos < cmdline.size()) {
    size_t end = cmdline.find(' ', pos);
    if (end == std::string_view::npos) end = cmdline.size();
    std::string_view word = cmdline.substr(pos, end - pos);
    if (word.substr(0, kKey.size()) == kKey) {
      std::string_view disk = word.substr(kKey.size());
      // Only a plain device name: "vda", never a path.
      bool plain = !disk.empty() && disk.size() <= 16;
      for (char c : disk) plain = plain && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
      return plain ? std::string(disk) : std::string();
    }
    pos = end + 1;
  }
  return {};
}

std::string enter_image_root(const std::string& disk) {
  const std::string device = cat("/dev/", disk);
  if (auto e = wait_for_disk(device); !e.empty()) return e;
  if (auto e = mount_layers(device); !e.empty()) return e;
  for (const char* path : kBaseFiles)
    if (auto e = add_base_file(path); !e.empty()) return e;
  if (auto e = set_hostname_file(); !e.empty()) return e;
  if (auto e = merge_hosts(); !e.empty()) return e;
  if (auto e = move_mounts(); !e.empty()) return e;
  return switch_to_new_root();
}

}  // namespace kiln::agent
