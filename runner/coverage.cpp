#include "runner/coverage.h"

#include "common/fs.h"
#include "common/subprocess.h"
#include "common/temp_file.h"
#include "common/unique_fd.h"
#include "runner/outputs.h"
#include "snapshot/sparse_io.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace kiln::runner {
namespace {

namespace stdfs = std::filesystem;

// Counters of a whole run: far more than any test's .gcda files.
constexpr uint64_t kMaxCoverageBytes = uint64_t{1} << 30;

struct Counter {
  stdfs::path relative;  ///< under the collected tree: the host path without its leading '/'
  stdfs::path host;      ///< the host's .gcda
  UniqueFd fd;           ///< the host's .gcda, open and locked
  bool host_has_data = false;
};

// The host's .gcda open read-write (made if missing, never through a symlink) and
// locked the way libgcov locks it while it merges at exit.
Result<UniqueFd> open_locked(const stdfs::path& gcda) {
  UniqueFd fd(::open(gcda.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return make_error("cannot open {}: {}", gcda.string(), std::strerror(errno));
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  while (::fcntl(fd.get(), F_SETLKW, &lock) != 0)
    if (errno != EINTR) return make_error("cannot lock {}: {}", gcda.string(), std::strerror(errno));
  return fd;
}

Result<std::string> read_fd(int fd, const stdfs::path& name) {
  std::string out;
  char buf[65536];
  for (off_t at = 0;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot read {}: {}", name.string(), std::strerror(errno));
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    at += n;
  }
}

Result<void> replace_contents(int fd, const std::string& data, const stdfs::path& name) {
  if (::ftruncate(fd, 0) != 0) return make_error("cannot truncate {}: {}", name.string(), std::strerror(errno));
  return snapshot::sparse::write_exact(fd, data.data(), data.size(), 0, name);
}

Result<void> write_file(const stdfs::path& path, const std::string& data) {
  KILN_TRY(fs::make_dirs(path.parent_path()));
  KILN_ASSIGN_OR_RETURN(UniqueFd fd, fs::create_new_file(path, 0644));
  return replace_contents(fd.get(), data, path);
}

// Every .gcda of the collected tree whose host path has the host build's .gcno beside
// it, in path order (the order the locks are taken in, so merges never deadlock).
std::vector<Counter> counters_in(const stdfs::path& tree, CoverageReport& report) {
  std::vector<Counter> out;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(tree, ec); !ec && it != stdfs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file(ec) || it->is_symlink(ec) || it->path().extension() != ".gcda") continue;
    Counter c;
    c.relative = stdfs::relative(it->path(), tree, ec);
    c.host = stdfs::path("/") / c.relative;
    auto gcno = c.host;
    gcno.replace_extension(".gcno");
    if (!stdfs::is_regular_file(stdfs::symlink_status(gcno, ec))) {
      ++report.skipped;
      continue;
    }
    out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(), [](const Counter& a, const Counter& b) { return a.host < b.host; });
  return out;
}

}  // namespace

Result<CoverageReport> merge_coverage(const stdfs::path& guest_tree) {
  CoverageReport report;
  std::vector<Counter> counters = counters_in(guest_tree, report);
  if (counters.empty()) return report;
  KILN_ASSIGN_OR_RETURN(auto work, fs::TempDir::create(stdfs::temp_directory_path(), "kiln-gcov-merge-"));
  const auto host_copies = work.path() / "host", guest_copies = work.path() / "guest", merged = work.path() / "merged";
  bool any_merge = false;
  for (Counter& c : counters) {
    KILN_ASSIGN_OR_RETURN(c.fd, open_locked(c.host));
    KILN_ASSIGN_OR_RETURN(std::string host_data, read_fd(c.fd.get(), c.host));
    c.host_has_data = !host_data.empty();
    if (!c.host_has_data) continue;
    // gcov-tool merges two trees of .gcda files: the host's counters and the guest's.
    KILN_TRY(write_file(host_copies / c.relative, host_data));
    std::error_code ec;
    stdfs::create_directories((guest_copies / c.relative).parent_path(), ec);
    stdfs::copy_file(guest_tree / c.relative, guest_copies / c.relative, ec);
    if (ec) return make_error("cannot copy {}: {}", (guest_tree / c.relative).string(), ec.message());
    any_merge = true;
  }
  if (any_merge) {
    auto run = run_captured({"gcov-tool", "merge", "-o", merged.string(), host_copies.string(), guest_copies.string()});
    if (!run)
      return make_error("cannot merge the test's coverage counters: {} (gcov-tool comes with gcc)", run.error().message);
    if (run->exit_code != 0)
      return make_error("gcov-tool merge failed (exit {}): {}", run->exit_code, run->err.empty() ? run->out : run->err);
  }
  for (Counter& c : counters) {
    const auto from = c.host_has_data ? merged / c.relative : guest_tree / c.relative;
    KILN_ASSIGN_OR_RETURN(std::string data, fs::read_file(from, kMaxCoverageBytes));
    KILN_TRY(replace_contents(c.fd.get(), data, c.host));
    ++report.merged;
  }
  return report;  // the descriptors close here, and the locks go with them
}

Result<CoverageReport> bring_back_coverage(AgentClient& agent, Deadline deadline) {
  KILN_ASSIGN_OR_RETURN(auto tree, fs::TempDir::create(stdfs::temp_directory_path(), "kiln-gcov-"));
  KILN_ASSIGN_OR_RETURN(OutputsReport got, collect_tree(agent, deadline, proto::kGuestCoverageDir, tree.path(),
                                                       kMaxCoverageBytes));
  if (got.left_out > 0)
    return make_error("the guest's coverage counters did not all come back: {}", got.note);
  return merge_coverage(tree.path());
}

}  // namespace kiln::runner
