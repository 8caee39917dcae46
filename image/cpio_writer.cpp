#include "image/cpio_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <set>

namespace kiln::image {
namespace {

constexpr uint64_t kMaxMemberSize = 1ull << 30;

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

bool is_valid_member_path(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.back() == '/') return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t slash = p.find('/', start);
    std::string_view part(p.data() + start, (slash == std::string::npos ? p.size() : slash) - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return p.find('\0') == std::string::npos && p.find('\n') == std::string::npos;
}

std::string archive_message(archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown libarchive error";
}

Result<void> write_all(archive* a, const char* data, size_t size, const std::string& what) {
  while (size > 0) {
    la_ssize_t n = archive_write_data(a, data, size);
    if (n <= 0) return make_error("cannot write {}: {}", what, archive_message(a));
    data += n;
    size -= static_cast<size_t>(n);
  }
  return {};
}

// Stream a file into the archive; `size` was declared in the header, so exactly that much is written.
Result<void> copy_file(archive* a, int fd, uint64_t size, const CpioEntry& e, const std::string& what) {
  std::vector<char> buf(1 << 16);
  uint64_t left = size;
  while (left > 0) {
    ssize_t n = ::read(fd, buf.data(), static_cast<size_t>(std::min<uint64_t>(left, buf.size())));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot read {}: {}", e.source.string(), std::strerror(errno));
    if (n == 0) return make_error("{} shrank while it was copied into {}; run again", e.source.string(), what);
    KILN_TRY(write_all(a, buf.data(), static_cast<size_t>(n), what));
    left -= static_cast<uint64_t>(n);
  }
  return {};
}

}  // namespace

Result<std::vector<CpioEntry>> canonical_tree(std::vector<CpioEntry> entries) {
  std::set<std::string> paths;
  for (const auto& e : entries) {
    if (!is_valid_member_path(e.path)) return make_error("internal: invalid initramfs member path '{}'", e.path);
    if (!paths.insert(e.path).second) return make_error("internal: initramfs member '{}' appears twice", e.path);
  }
  std::vector<CpioEntry> parents;
  for (const auto& e : entries) {
    for (size_t slash = e.path.find('/'); slash != std::string::npos; slash = e.path.find('/', slash + 1)) {
      std::string parent = e.path.substr(0, slash);
      if (!paths.insert(parent).second) continue;
      CpioEntry dir;
      dir.path = std::move(parent);
      dir.kind = CpioEntry::Kind::directory;
      dir.mode = 0755;
      parents.push_back(std::move(dir));
    }
  }
  entries.insert(entries.end(), std::make_move_iterator(parents.begin()), std::make_move_iterator(parents.end()));
  // Byte order: a parent is a prefix of its children, so it sorts first.
  std::sort(entries.begin(), entries.end(), [](const CpioEntry& x, const CpioEntry& y) { return x.path < y.path; });
  return entries;
}

Result<void> write_cpio_newc(int fd, const std::vector<CpioEntry>& entries, const std::string& what) {
  std::unique_ptr<archive, ArchiveDeleter> a(archive_write_new());
  if (!a) return make_error("cannot create an archive writer for {}: out of memory", what);
  if (archive_write_set_format_cpio_newc(a.get()) != ARCHIVE_OK || archive_write_add_filter_none(a.get()) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(a.get(), 1) != ARCHIVE_OK || archive_write_open_fd(a.get(), fd) != ARCHIVE_OK)
    return make_error("cannot start writing {}: {}", what, archive_message(a.get()));

  int64_t ino = 0;
  for (const auto& e : entries) {
    std::unique_ptr<archive_entry, EntryDeleter> ae(archive_entry_new());
    archive_entry_set_pathname(ae.get(), e.path.c_str());
    archive_entry_set_uid(ae.get(), 0);
    archive_entry_set_gid(ae.get(), 0);
    archive_entry_set_mtime(ae.get(), 0, 0);
    // Distinct inode numbers: the kernel's unpacker hard-links members that share one.
    archive_entry_set_ino64(ae.get(), ++ino);
    archive_entry_set_perm(ae.get(), e.mode & 07777);
    // libarchive insists on a size even where there is no data (it sizes symlinks itself).
    archive_entry_set_size(ae.get(), 0);
    int file_fd = -1;
    uint64_t size = 0;
    switch (e.kind) {
      case CpioEntry::Kind::directory:
        archive_entry_set_filetype(ae.get(), AE_IFDIR);
        archive_entry_set_nlink(ae.get(), 2);
        break;
      case CpioEntry::Kind::symlink:
        archive_entry_set_filetype(ae.get(), AE_IFLNK);
        archive_entry_set_symlink(ae.get(), e.link_target.c_str());
        archive_entry_set_nlink(ae.get(), 1);
        break;
      case CpioEntry::Kind::char_device:
        archive_entry_set_filetype(ae.get(), AE_IFCHR);
        archive_entry_set_rdevmajor(ae.get(), e.dev_major);
        archive_entry_set_rdevminor(ae.get(), e.dev_minor);
        archive_entry_set_nlink(ae.get(), 1);
        break;
      case CpioEntry::Kind::file:
        archive_entry_set_filetype(ae.get(), AE_IFREG);
        archive_entry_set_nlink(ae.get(), 1);
        size = e.data.size();
        if (!e.source.empty()) {
          file_fd = ::open(e.source.c_str(), O_RDONLY | O_CLOEXEC);
          if (file_fd < 0) return make_error("cannot open {}: {}", e.source.string(), std::strerror(errno));
          struct stat st {};
          if (::fstat(file_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(file_fd);
            return make_error("{} is not a regular file; cannot put it into {}", e.source.string(), what);
          }
          size = static_cast<uint64_t>(st.st_size);
        }
        if (size > kMaxMemberSize) {
          if (file_fd >= 0) ::close(file_fd);
          return make_error("{} is {} bytes, more than the {} kiln puts into an initramfs",
                            e.source.empty() ? e.path : e.source.string(), size, kMaxMemberSize);
        }
        archive_entry_set_size(ae.get(), static_cast<la_int64_t>(size));
        break;
    }
    Result<void> status;
    if (archive_write_header(a.get(), ae.get()) != ARCHIVE_OK)
      status = make_error("cannot write the {} entry of {}: {}", e.path, what, archive_message(a.get()));
    else if (file_fd >= 0)
      status = copy_file(a.get(), file_fd, size, e, what);
    else if (e.kind == CpioEntry::Kind::file)
      status = write_all(a.get(), e.data.data(), e.data.size(), what);
    if (file_fd >= 0) ::close(file_fd);
    KILN_TRY(std::move(status));
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK)
    return make_error("cannot finish writing {}: {}", what, archive_message(a.get()));
  return {};
}

}  // namespace kiln::image
