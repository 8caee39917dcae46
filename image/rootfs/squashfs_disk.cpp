#include "image/rootfs/squashfs_disk.h"

#include "common/subprocess.h"
#include "common/temp_file.h"
#include "common/unique_fd.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kiln::rootfs {
namespace {

// tar2sqfs's messages kept for an error: its last lines are what matter.
constexpr size_t kMaxDiagnosticBytes = 8192;

// Bytes into the socket tar2sqfs reads as stdin. send(MSG_NOSIGNAL): a tar2sqfs that
// died gives EPIPE here, never a SIGPIPE that would kill kiln.
Result<void> send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error("tar2sqfs stopped reading its input: {}", std::strerror(errno));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

// The tail of what tar2sqfs wrote to stdout and stderr, one line.
std::string diagnostics(int memfd) {
  off_t end = ::lseek(memfd, 0, SEEK_END);
  if (end <= 0) return "(it printed nothing)";
  off_t start = end > static_cast<off_t>(kMaxDiagnosticBytes) ? end - static_cast<off_t>(kMaxDiagnosticBytes) : 0;
  std::string text(static_cast<size_t>(end - start), '\0');
  ssize_t n = ::pread(memfd, text.data(), text.size(), start);
  text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  for (char& c : text)
    if (c == '\n') c = ' ';
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// tar2sqfs's arguments for each compressor the guest kernel reads. zstd at level 6, not
// tar2sqfs's 15: on the PostgreSQL image level 15 took 57 s of CPU for 8% fewer bytes
// than level 6 (4 s), and reading is as fast at either (docs/images.md).
std::vector<std::string> compressor_args(const std::string& name) {
  if (name == "zstd") return {"--compressor", "zstd", "--comp-extra", "level=6"};
  if (name == "xz" || name == "lz4" || name == "gzip") return {"--compressor", name};
  return {};
}

}  // namespace

bool is_guest_compressor(const std::string& name) { return !compressor_args(name).empty(); }

Result<void> write_squashfs_disk(const std::filesystem::path& disk, const std::string& compressor,
                                 const std::function<Result<void>(const TarSink&)>& produce) {
  if (!is_guest_compressor(compressor))
    return make_error("squashfs compressor '{}' is not one the guest kernel reads: use zstd, xz, lz4 or gzip", compressor);
  KILN_ASSIGN_OR_RETURN(fs::TempFile temp, fs::TempFile::beside(disk, 0644));
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return make_error("cannot make a socket pair for tar2sqfs: {}", std::strerror(errno));
  UniqueFd ours(sv[0]), theirs(sv[1]);
  UniqueFd messages(::memfd_create("tar2sqfs-messages", MFD_CLOEXEC));
  if (!messages) return make_error("cannot make a buffer for tar2sqfs's messages: {}", std::strerror(errno));

  SpawnOptions o;
  o.stdin_fd = theirs.get();
  o.stdout_fd = messages.get();
  o.stderr_fd = messages.get();
  // --no-skip: anything tar2sqfs cannot store is an error, never a silently missing file.
  // --force: the temp file exists (made exclusively above); tar2sqfs truncates it in place.
  std::vector<std::string> argv = {"tar2sqfs", "--quiet", "--no-skip", "--force"};
  for (auto& arg : compressor_args(compressor)) argv.push_back(std::move(arg));
  argv.push_back(temp.path().string());
  auto child = ChildProcess::spawn(argv, o);
  if (!child)
    return make_error("{} (tar2sqfs makes image disks: apt-get install squashfs-tools-ng)", child.error().message);
  theirs.reset();

  bool reader_gone = false;
  Result<void> fed = produce([&](std::string_view bytes) {
    auto sent = send_all(ours.get(), bytes);
    reader_gone = !sent;
    return sent;
  });
  ours.reset();  // end of input: tar2sqfs finishes the image
  // Our own failure (a refused layer): stop tar2sqfs, its half image goes with `temp`.
  // Its failure (it stopped reading): its own message says why.
  if (!fed && !reader_gone) {
    child->kill();
    return fed.take_error();
  }
  int status = child->wait();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return make_error("tar2sqfs {} making {}: {}", describe_wait_status(status), disk.string(), diagnostics(messages.get()));
  return temp.commit(disk, fs::Durability::flushed);
}

}  // namespace kiln::rootfs
