#include "snapshot/digest_stamp.h"

#include "common/digest.h"
#include "common/fs.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <sstream>

namespace kiln::snapshot {
namespace {

constexpr std::string_view kTag = "kiln-digest-stamp/1";

// One line: tag, digest, source ("-" if none), boot id, then the identity fields.
std::string stamp_line(const std::string& digest, const std::string& source, const std::string& boot,
                       const std::string& id) {
  return fmt::format("{} {} {} {} {}\n", kTag, digest, source.empty() ? "-" : source, boot, id);
}

}  // namespace

std::optional<std::string> file_identity(const std::filesystem::path& file) {
  struct stat st {};
  if (::lstat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return fmt::format("dev={} ino={} size={} mtime={}.{:09} ctime={}.{:09}", st.st_dev, st.st_ino, st.st_size,
                     st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

std::string host_boot_id() {
  auto text = fs::read_file("/proc/sys/kernel/random/boot_id", 128);
  if (!text) return "";
  std::string id = *text;
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id.find(' ') == std::string::npos ? id : "";
}

DigestStamp read_digest_stamp(const std::filesystem::path& stamp) {
  auto text = fs::read_file(stamp, 4096);
  if (!text) return {};
  std::istringstream in(*text);
  std::string tag, digest, source;
  if (!(in >> tag >> digest >> source) || tag != kTag) return {};
  return DigestStamp{digest, source == "-" ? "" : source};
}

std::optional<std::string> check_digest_once(const std::filesystem::path& file, const std::string& digest,
                                             const std::filesystem::path& stamp, const std::string& source,
                                             bool force) {
  auto before = file_identity(file);
  if (!before) return fmt::format("{} is missing or not a regular file", file.filename().string());
  std::string boot = host_boot_id();
  if (!force && !boot.empty()) {
    auto text = fs::read_file(stamp, 4096);
    if (text && *text == stamp_line(digest, source, boot, *before)) return std::nullopt;
  }
  auto actual = digest_sparse_file(file);
  if (!actual) return fmt::format("cannot read {}: {}", file.filename().string(), actual.error().message);
  if (*actual != digest) return fmt::format("{} does not match its digest (corrupted)", file.filename().string());
  // Only stamp what we read: if the file changed while we digested it, check again next time.
  if (!boot.empty() && file_identity(file) == before)
    (void)fs::write_file_atomic(stamp, stamp_line(digest, source, boot, *before));
  return std::nullopt;
}

Result<void> write_digest_stamp(const std::filesystem::path& file, const std::string& digest,
                                const std::filesystem::path& stamp, const std::string& source) {
  auto id = file_identity(file);
  if (!id) return make_error("{} is missing or not a regular file", file.string());
  return fs::write_file_atomic(stamp, stamp_line(digest, source, host_boot_id(), *id));
}

}  // namespace kiln::snapshot
