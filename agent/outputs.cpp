#include "agent/outputs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "agent/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {
namespace {

constexpr size_t kBlock = 512;
constexpr size_t kFrameBytes = 64u << 10;
constexpr int kMaxDepth = 32;
constexpr uint64_t kMaxUstarSize = (uint64_t{1} << 33) - 1;  // 11 octal digits

// The names in `dir`, sorted (the stream is the same for the same tree).
std::vector<std::string> sorted_names(int dir) {
  std::vector<std::string> names;
  int copy = ::dup(dir);
  if (copy < 0) return names;
  DIR* d = ::fdopendir(copy);
  if (!d) {
    ::close(copy);
    return names;
  }
  while (const dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

class TarSender {
 public:
  TarSender(const std::function<Status(std::string_view)>& sink, uint64_t max_bytes)
      : sink_(sink), max_bytes_(max_bytes) {}

  Status add_dir_contents(int dir, const std::string& rel, int depth);
  Status finish();
  const proto::Collected& stats() const { return stats_; }

 private:
  Status add_entry(int dir, const std::string& name, const std::string& rel, int depth);
  Status add_file(int dir, const std::string& name, const std::string& rel, const struct stat& st);
  // The 512-byte ustar header, or false when `rel` or `link` does not fit one.
  static bool header(const std::string& rel, char type, const struct stat& st, uint64_t size,
                     const std::string& link, char out[kBlock]);
  Status put(const char* data, size_t size);
  Status flush();
  void leave_out(const std::string& rel, const char* why);

  const std::function<Status(std::string_view)>& sink_;
  uint64_t max_bytes_;
  std::string buf_;
  proto::Collected stats_;
};

// `value` as width - 1 octal digits (zero-padded) and a NUL; header() keeps it in range.
void put_octal(char* field, size_t width, uint64_t value) {
  field[width - 1] = '\0';
  for (size_t i = width - 1; i-- > 0; value >>= 3) field[i] = static_cast<char>('0' + (value & 7));
}

bool TarSender::header(const std::string& rel, char type, const struct stat& st, uint64_t size,
                       const std::string& link, char out[kBlock]) {
  std::memset(out, 0, kBlock);
  std::string name = rel, prefix;
  if (name.size() > 100) {
    // ustar: prefix (<= 155) "/" name (<= 100), split at a slash.
    size_t slash = rel.rfind('/', 155);
    while (slash != std::string::npos && rel.size() - slash - 1 > 100) slash = std::string::npos;
    if (slash == std::string::npos || slash == 0) return false;
    prefix = rel.substr(0, slash);
    name = rel.substr(slash + 1);
  }
  if (link.size() > 100 || size > kMaxUstarSize) return false;
  std::memcpy(out, name.data(), name.size());
  put_octal(out + 100, 8, st.st_mode & 07777);
  put_octal(out + 108, 8, 0);
  put_octal(out + 116, 8, 0);
  put_octal(out + 124, 12, size);
  put_octal(out + 136, 12, st.st_mtim.tv_sec > 0 ? static_cast<uint64_t>(st.st_mtim.tv_sec) : 0);
  out[156] = type;
  std::memcpy(out + 157, link.data(), link.size());
  std::memcpy(out + 257, "ustar", 6);
  std::memcpy(out + 263, "00", 2);
  std::memcpy(out + 345, prefix.data(), prefix.size());
  std::memset(out + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += static_cast<unsigned char>(out[i]);
  put_octal(out + 148, 7, sum);  // six digits, NUL, then the space already there

  return true;
}

void TarSender::leave_out(const std::string& rel, const char* why) {
  ++stats_.left_out;
  if (stats_.note.size() >= proto::kMaxMessage / 2) return;
  stats_.note += cat(stats_.note.empty() ? "" : "; ", rel, " (", why, ")");
}

Status TarSender::put(const char* data, size_t size) {
  buf_.append(data, size);
  return buf_.size() >= kFrameBytes ? flush() : Status::ok();
}

Status TarSender::flush() {
  for (size_t at = 0; at < buf_.size(); at += kFrameBytes) {
    Status s = sink_(std::string_view(buf_).substr(at, std::min(kFrameBytes, buf_.size() - at)));
    if (!s.is_ok()) return s;
  }
  buf_.clear();
  return Status::ok();
}

Status TarSender::add_file(int dir, const std::string& name, const std::string& rel, const struct stat& st) {
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes_ - stats_.bytes) {
    leave_out(rel, cat(size, " bytes: over the outputs cap").c_str());
    return Status::ok();
  }
  UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  char head[kBlock];
  if (!fd.valid() || !header(rel, '0', st, size, "", head)) {
    leave_out(rel, fd.valid() ? "its path is longer than a tar header holds" : "cannot be opened");
    return Status::ok();
  }
  if (Status s = put(head, kBlock); !s.is_ok()) return s;
  // Exactly `size` bytes, whatever the file does meanwhile (a process the test left may
  // still write it): cut at the size, or padded with zeros.
  char chunk[16384];
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::read(fd.get(), chunk, static_cast<size_t>(std::min<uint64_t>(sizeof chunk, size - done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (Status s = put(chunk, static_cast<size_t>(n)); !s.is_ok()) return s;
    done += static_cast<uint64_t>(n);
  }
  std::string pad(static_cast<size_t>(size - done) + (kBlock - size % kBlock) % kBlock, '\0');
  if (Status s = put(pad.data(), pad.size()); !s.is_ok()) return s;
  stats_.bytes += size;
  ++stats_.entries;
  return Status::ok();
}

Status TarSender::add_entry(int dir, const std::string& name, const std::string& rel, int depth) {
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Status::ok();  // gone meanwhile
  if (stats_.entries >= proto::kMaxOutputEntries) {
    leave_out(rel, "over the entry limit");
    return Status::ok();
  }
  char head[kBlock];
  if (S_ISREG(st.st_mode)) return add_file(dir, name, rel, st);
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlinkat(dir, name.c_str(), target, sizeof target);
    if (n < 0 || !header(rel, '2', st, 0, std::string(target, static_cast<size_t>(n)), head)) {
      leave_out(rel, "a symlink whose target a tar header cannot hold");
      return Status::ok();
    }
    ++stats_.entries;
    return put(head, kBlock);
  }
  if (S_ISDIR(st.st_mode)) {
    if (depth >= kMaxDepth || !header(rel + "/", '5', st, 0, "", head)) {
      leave_out(rel, "nested too deep, or its path is longer than a tar header holds");
      return Status::ok();
    }
    UniqueFd sub(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub.valid()) return Status::ok();
    ++stats_.entries;
    if (Status s = put(head, kBlock); !s.is_ok()) return s;
    return add_dir_contents(sub.get(), rel, depth + 1);
  }
  leave_out(rel, "not a regular file, directory or symlink");
  return Status::ok();
}

Status TarSender::add_dir_contents(int dir, const std::string& rel, int depth) {
  for (const std::string& name : sorted_names(dir))
    if (Status s = add_entry(dir, name, rel.empty() ? name : cat(rel, "/", name), depth); !s.is_ok()) return s;
  return Status::ok();
}

Status TarSender::finish() {
  const std::string end(2 * kBlock, '\0');
  if (Status s = put(end.data(), end.size()); !s.is_ok()) return s;
  if (stats_.left_out > 0 && stats_.note.size() >= proto::kMaxMessage / 2) stats_.note += "; ...";
  return flush();
}

}  // namespace

bool directory_has_entries(const char* dir) {
  UniqueFd fd(::open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  return fd.valid() && !sorted_names(fd.get()).empty();
}

Status write_outputs(const proto::Collect& request, const std::function<Status(std::string_view)>& sink,
                     proto::Collected* sent) {
  TarSender tar(sink, request.max_bytes);
  UniqueFd dir(::open(request.dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dir.valid()) {
    if (Status s = tar.add_dir_contents(dir.get(), "", 0); !s.is_ok()) return s;
  } else if (errno != ENOENT) {
    log("collect: ", sys_error(cat("open ", request.dir)));
  }
  Status s = tar.finish();
  *sent = tar.stats();
  return s;
}

}  // namespace kiln::agent
