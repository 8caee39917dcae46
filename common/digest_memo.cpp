#include "common/digest_memo.h"

#include "common/digest.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/temp_file.h"
#include "common/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace kiln {
namespace {

namespace stdfs = std::filesystem;

// What decides that a file is unchanged. ctime cannot be set back by anyone, and
// together with the inode it catches any write or replacement (but see kRacyMargin).
struct Identity {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const Identity&) const = default;
};

struct IdentityHash {
  size_t operator()(const Identity& id) const {
    size_t h = id.ino;
    for (uint64_t v : {id.dev, id.size, static_cast<uint64_t>(id.mtime_ns), static_cast<uint64_t>(id.ctime_ns)})
      h = h * 1099511628211u ^ v;
    return h;
  }
};

constexpr std::string_view kRecordMagic = "kiln-digest-memo 1";
constexpr size_t kDigestHexLen = 32;
constexpr size_t kMaxRecordBytes = 512;  // a valid record is ~130 bytes

std::atomic<uint64_t> g_hashed{0};

// The process's memo: identity -> digest. Identities, not paths, so one file reached by
// two paths is hashed once.
struct MemoryMemo {
  std::mutex mutex;
  std::unordered_map<Identity, std::string, IdentityHash> digests;
};

MemoryMemo& memory_memo() {
  static MemoryMemo memo;
  return memo;
}

std::optional<std::string> memory_lookup(const Identity& id) {
  auto& memo = memory_memo();
  std::lock_guard lock(memo.mutex);
  auto it = memo.digests.find(id);
  if (it == memo.digests.end()) return std::nullopt;
  return it->second;
}

void memory_store(const Identity& id, const std::string& digest) {
  auto& memo = memory_memo();
  std::lock_guard lock(memo.mutex);
  memo.digests[id] = digest;
}

int64_t ns_of(const timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec; }

// The identity of the open file, or nullopt if it is not a regular file (a device or a
// FIFO has no content identity worth remembering).
Result<std::optional<Identity>> identity_of(int fd, const stdfs::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return make_error("cannot stat {}: {}", path.string(), std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return std::optional<Identity>{};
  return std::optional<Identity>{Identity{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                                          static_cast<uint64_t>(st.st_size), ns_of(st.st_mtim), ns_of(st.st_ctim)}};
}

// Settled: last changed long enough before `now` that a later change cannot share its
// timestamps (the racy-timestamp guard).
bool settled(const Identity& id, std::chrono::system_clock::time_point now) {
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  const int64_t limit = now_ns - std::chrono::duration_cast<std::chrono::nanoseconds>(kRacyMargin).count();
  return id.mtime_ns < limit && id.ctime_ns < limit;
}

// One record per path: rebuilding a file overwrites its own record.
stdfs::path record_path(const stdfs::path& memo_dir, const stdfs::path& file) {
  std::error_code ec;
  stdfs::path abs = stdfs::absolute(file, ec);
  return memo_dir / digest_bytes((ec ? file : abs).lexically_normal().string());
}

// Everything a record holds before the digest; a record matches an identity only if it
// starts with exactly this.
std::string record_prefix(const Identity& id) {
  return fmt::format("{} {} {} {} {} {} ", kRecordMagic, id.dev, id.ino, id.size, id.mtime_ns, id.ctime_ns);
}

bool is_digest_hex(std::string_view s) {
  if (s.size() != kDigestHexLen) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// The record's bytes: a regular file (not followed if a symlink, never blocking on a
// FIFO), at most kMaxRecordBytes + 1 read so an oversized one is told apart.
std::optional<std::string> read_record_bytes(const stdfs::path& record) {
  UniqueFd fd(::open(record.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) return std::nullopt;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  std::string bytes(kMaxRecordBytes + 1, '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::read(fd.get(), bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > kMaxRecordBytes) return std::nullopt;
  bytes.resize(got);
  return bytes;
}

// The digest a record holds for `id`; nullopt when the record is missing, malformed or
// about another identity (the file changed since).
std::optional<std::string> read_record(const stdfs::path& record, const Identity& id) {
  auto bytes = read_record_bytes(record);
  if (!bytes) return std::nullopt;
  const std::string prefix = record_prefix(id);
  if (bytes->size() != prefix.size() + kDigestHexLen + 1 || bytes->compare(0, prefix.size(), prefix) != 0 ||
      bytes->back() != '\n')
    return std::nullopt;
  std::string digest = bytes->substr(prefix.size(), kDigestHexLen);
  if (!is_digest_hex(digest)) return std::nullopt;
  return digest;
}

// Atomic (temp file + rename): a reader sees the old record or the new one. Not
// fsync'd: a record torn by a crash is malformed, ignored and rewritten.
Result<void> write_record(const stdfs::path& record, const Identity& id, const std::string& digest) {
  KILN_TRY(fs::make_dirs(record.parent_path()));
  KILN_ASSIGN_OR_RETURN(fs::TempFile tmp, fs::TempFile::beside(record, 0600));
  KILN_TRY(tmp.write(record_prefix(id) + digest + "\n"));
  return tmp.commit(record, fs::Durability::unflushed);
}

}  // namespace

Result<std::string> memo_digest_file(const stdfs::path& path, const stdfs::path& memo_dir,
                                     std::chrono::system_clock::time_point now) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error("cannot open {}: {}", path.string(), std::strerror(errno));
  KILN_ASSIGN_OR_RETURN(std::optional<Identity> id, identity_of(fd.get(), path));
  if (!id) {
    g_hashed.fetch_add(1, std::memory_order_relaxed);
    return digest_file(path);
  }
  const bool rememberable = settled(*id, now);
  const stdfs::path record = memo_dir.empty() ? stdfs::path() : record_path(memo_dir, path);
  if (rememberable) {
    if (auto d = memory_lookup(*id)) return *d;
    if (!record.empty())
      if (auto d = read_record(record, *id)) {
        memory_store(*id, *d);
        return *d;
      }
  }
  g_hashed.fetch_add(1, std::memory_order_relaxed);
  KILN_ASSIGN_OR_RETURN(std::string digest, digest_open_file(fd.get(), id->size, path));
  if (!rememberable) return digest;
  // Changed while it was read: the digest is of a mixture; return it (as digest_file
  // would) but remember nothing.
  auto after = identity_of(fd.get(), path);
  if (!after || *after != id) return digest;
  memory_store(*id, digest);
  if (!record.empty())
    if (auto w = write_record(record, *id, digest); !w)
      log::debug("not remembering the digest of {}: {}", path.string(), w.error().message);
  return digest;
}

Result<std::string> memo_digest_file(const stdfs::path& path) {
  auto now = std::chrono::system_clock::now();
  auto root = fs::prepare_cache_root();
  // No usable cache root: remember in memory only.
  return memo_digest_file(path, root ? *root / "digests" : stdfs::path(), now);
}

uint64_t memo_digest_files_hashed() { return g_hashed.load(std::memory_order_relaxed); }

void memo_digest_forget_in_memory() {
  auto& memo = memory_memo();
  std::lock_guard lock(memo.mutex);
  memo.digests.clear();
}

}  // namespace kiln
