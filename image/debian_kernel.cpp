#include "image/debian_kernel.h"

#include "common/fs.h"
#include "common/log.h"
#include "common/subprocess.h"
#include "common/text.h"
#include "image/bzimage.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <vector>

namespace kiln::image {
namespace {

namespace stdfs = std::filesystem;

constexpr std::string_view kMetaPackage = "linux-image-cloud-amd64";
constexpr std::string_view kImagePrefix = "linux-image-";
constexpr std::string_view kFlavourSuffix = "-cloud-amd64";
constexpr std::string_view kNoApt =
    "kiln fetches its guest kernel with apt on Debian; elsewhere pass --kernel and --modules";

// An exclusive flock held for this object's lifetime; released by the kernel even on SIGKILL.
class FileLock {
 public:
  static Result<FileLock> acquire(const stdfs::path& path, const std::function<void(const std::string&)>& progress) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return make_error("cannot open lock file {}: {}", path.string(), std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) {
        int e = errno;
        ::close(fd);
        return make_error("cannot lock {}: {}", path.string(), std::strerror(e));
      }
      if (progress) progress("waiting for another kiln to finish fetching the guest kernel");
      while (::flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        int e = errno;
        ::close(fd);
        return make_error("cannot lock {}: {}", path.string(), std::strerror(e));
      }
    }
    return FileLock(fd);
  }
  FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileLock& operator=(FileLock&&) = delete;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

bool is_package_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-')) return false;
  return true;
}

// The last few hundred bytes of a tool's stderr: enough to show why it failed.
std::string tail(std::string_view s) {
  s = trim(s);
  if (s.size() > 400) s = s.substr(s.size() - 400);
  std::string out(s);
  for (char& c : out)
    if (c == '\n') c = ' ';
  return out;
}

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Run a tool to completion. Not starting it at all means it is not installed (a non-Debian
// host): say so. A non-zero exit is an error carrying its stderr and `hint`.
Result<CapturedRun> run_tool(const std::vector<std::string>& argv, std::string_view hint) {
  auto run = run_captured(argv);
  if (!run) return make_error("{}; {}", run.error().message, kNoApt);
  if (run->exit_code != 0)
    return make_error("`{}` failed ({}): {}; {}", join(argv),
                      run->exit_code < 0 ? std::string("killed") : fmt::format("exit {}", run->exit_code),
                      tail(run->err), hint);
  return run;
}

// depmod lives in /usr/sbin or /sbin, which a non-root PATH often lacks.
std::optional<stdfs::path> find_depmod() {
  std::vector<stdfs::path> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::string_view rest = path;
    while (!rest.empty()) {
      size_t colon = rest.find(':');
      if (auto d = rest.substr(0, colon); !d.empty()) dirs.emplace_back(std::string(d));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  dirs.emplace_back("/usr/sbin");
  dirs.emplace_back("/sbin");
  for (const auto& d : dirs)
    if (fs::is_executable_file(d / "depmod")) return d / "depmod";
  return std::nullopt;
}

Result<void> rename_path(const stdfs::path& from, const stdfs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    return make_error("cannot move {} to {}: {}", from.string(), to.string(), std::strerror(errno));
  return {};
}

// Leftovers of a fetch that was killed; only called under the lock, so none is live.
void remove_stale_fetches(const stdfs::path& kernels_dir) {
  std::error_code ec;
  for (stdfs::directory_iterator it(kernels_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().starts_with(".fetch-")) {
      std::error_code rm_ec;
      stdfs::remove_all(it->path(), rm_ec);
    }
  }
}

Result<stdfs::path> find_downloaded_deb(const stdfs::path& dir, const std::string& package) {
  std::error_code ec;
  for (stdfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".deb" && it->path().filename().string().starts_with(package + "_"))
      return it->path();
  return make_error("`apt-get download {}` reported success but left no {}_*.deb in {}", package, package,
                    dir.string());
}

// Debian 12 ships lib/modules/<v>; later releases ship usr/lib/modules/<v>. depmod -b wants lib/.
Result<stdfs::path> locate_modules(const stdfs::path& root, const std::string& version) {
  stdfs::path modules = root / "lib" / "modules" / version;
  std::error_code ec;
  if (stdfs::is_directory(modules, ec)) return modules;
  stdfs::path usr = root / "usr" / "lib" / "modules" / version;
  if (!stdfs::is_directory(usr, ec))
    return make_error("the Debian kernel package has no lib/modules/{} directory (looked in {})", version,
                      root.string());
  KILN_TRY(fs::make_dirs(modules.parent_path()));
  KILN_TRY(rename_path(usr, modules));
  return modules;
}

}  // namespace

std::optional<std::string> parse_apt_cache_depends(std::string_view output) {
  while (!output.empty()) {
    size_t nl = output.find('\n');
    std::string_view line = trim(output.substr(0, nl));
    output.remove_prefix(nl == std::string_view::npos ? output.size() : nl + 1);
    if (line.starts_with("|")) line.remove_prefix(1);  // an alternative ("|Depends:")
    if (!line.starts_with("Depends:")) continue;
    std::string_view pkg = trim(line.substr(std::string_view("Depends:").size()));
    // "<linux-image-...>" is a virtual package; apt-get download cannot fetch it.
    if (pkg.starts_with(kImagePrefix) && pkg.ends_with(kFlavourSuffix) &&
        pkg.size() > kImagePrefix.size() + kFlavourSuffix.size() && is_package_name(pkg))
      return std::string(pkg);
  }
  return std::nullopt;
}

Result<GuestKernel> fetch_debian_kernel(const stdfs::path& kernels_dir,
                                        const std::function<void(const std::string&)>& progress) {
  auto say = [&](const std::string& m) {
    if (progress) progress(m);
  };
  KILN_TRY(fs::make_dirs(kernels_dir));
  KILN_ASSIGN_OR_RETURN(FileLock lock, FileLock::acquire(kernels_dir / ".lock", progress));
  // Whoever held the lock before us may have just fetched it.
  if (auto cached = find_cached_kernel(kernels_dir)) return *cached;
  remove_stale_fetches(kernels_dir);

  KILN_ASSIGN_OR_RETURN(auto depends, run_tool({"apt-cache", "depends", std::string(kMetaPackage)},
                                               "run `sudo apt-get update` (or scripts/bootstrap)"));
  auto package = parse_apt_cache_depends(depends.out);
  if (!package)
    return make_error("apt knows no concrete package behind {}; run `sudo apt-get update` (or scripts/bootstrap) "
                      "so kiln can fetch the guest kernel",
                      kMetaPackage);
  std::string version = package->substr(kImagePrefix.size());

  KILN_ASSIGN_OR_RETURN(fs::TempDir tmp, fs::TempDir::create(kernels_dir, ".fetch-"));
  say(fmt::format("fetching Debian kernel {}", *package));
  // `env -C`: apt-get download writes to the working directory, and run_captured has no cwd option.
  std::vector<std::string> download = {"env", "-C", tmp.path().string(), "apt-get", "download", "-q"};
  // As root apt drops to the _apt user, which cannot write our 0700 temp dir (it warns and goes
  // unsandboxed); say so up front instead.
  if (::geteuid() == 0) download.insert(download.end(), {"-o", "APT::Sandbox::User=root"});
  download.push_back(*package);
  KILN_TRY(run_tool(download, "check network access to the Debian mirror and run `sudo apt-get update`"));
  KILN_ASSIGN_OR_RETURN(stdfs::path deb, find_downloaded_deb(tmp.path(), *package));

  say(fmt::format("unpacking {}", deb.filename().string()));
  stdfs::path root = tmp.path() / "root";
  KILN_TRY(run_tool({"dpkg-deb", "-x", deb.string(), root.string()}, "is dpkg-deb installed (package dpkg)?"));
  stdfs::path vmlinuz = root / "boot" / ("vmlinuz-" + version);
  KILN_TRY(check_bzimage(vmlinuz));
  KILN_ASSIGN_OR_RETURN(stdfs::path modules, locate_modules(root, version));

  say("depmod");
  auto depmod = find_depmod();
  if (!depmod)
    return make_error("depmod not found in PATH, /usr/sbin or /sbin; install it with `sudo apt-get install kmod`");
  KILN_TRY(run_tool({depmod->string(), "-b", root.string(), version}, "is kmod installed and working?"));
  std::error_code ec;
  if (!stdfs::exists(modules / "modules.dep", ec))
    return make_error("depmod -b {} {} did not create {}/modules.dep", root.string(), version, modules.string());

  // Keep only what the guest needs: the bzImage and its modules (~100 MB of the package is not that).
  stdfs::path staged = tmp.path() / "kernel";
  KILN_TRY(fs::make_dirs(staged / "boot"));
  KILN_TRY(fs::make_dirs(staged / "lib" / "modules"));
  KILN_TRY(rename_path(vmlinuz, staged / "boot" / vmlinuz.filename()));
  KILN_TRY(rename_path(modules, staged / "lib" / "modules" / version));
  // Data reaches the disk before the marker that vouches for it.
  if (int fd = ::open(staged.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::syncfs(fd);
    ::close(fd);
  }
  KILN_TRY(fs::write_file_atomic(staged / kKernelCompleteMarker, version + "\n"));

  stdfs::path dest = kernels_dir / version;
  // An incomplete directory of that name (no marker) is garbage: we hold the lock.
  stdfs::remove_all(dest, ec);
  KILN_TRY(rename_path(staged, dest));
  return GuestKernel{dest / "boot" / vmlinuz.filename(), dest / "lib" / "modules" / version, version};
}

}  // namespace kiln::image
