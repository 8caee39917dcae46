#include "remote/snapshot_archive.h"

#include "common/unique_fd.h"
#include "snapshot/layout.h"
#include "snapshot/sparse_io.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace kiln::remote {
namespace {

namespace layout = snapshot::layout;
using snapshot::FileInfo;
using snapshot::Metadata;

constexpr size_t kChunk = 1 << 20;

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;
using EntryPtr = std::unique_ptr<archive_entry, EntryDeleter>;

/// The members in order: metadata.json, then the state, then the memory file(s).
struct Member {
  std::string name;
  uint64_t size = 0;
  bool sparse = false;
};

std::vector<Member> members_of(const Metadata& meta, uint64_t metadata_size) {
  std::vector<Member> m{{std::string(layout::kMetadataFile), metadata_size, false},
                        {meta.state.name, meta.state.size, false}};
  if (meta.layer) m.push_back({meta.layer->index.name, meta.layer->index.size, false});
  m.push_back({meta.memory.name, meta.memory.size, !meta.layer});
  return m;
}

Error archive_error(archive* a, const std::string& what) {
  const char* why = archive_error_string(a);
  return make_error("{}: {}", what, why ? why : "libarchive failed");
}

EntryPtr header_for(const Member& m) {
  EntryPtr e(archive_entry_new());
  archive_entry_set_pathname(e.get(), m.name.c_str());
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), 0644);
  archive_entry_set_size(e.get(), static_cast<la_int64_t>(m.size));
  archive_entry_set_mtime(e.get(), 0, 0);
  return e;
}

// libarchive's pax writer takes a sparse member's whole logical content and drops what
// falls in its holes; the holes are fed from one static zero buffer.
Result<void> write_member(archive* a, const std::filesystem::path& dir, const Member& m) {
  const auto path = dir / m.name;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return make_error("packing {}: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != m.size)
    return make_error("packing {}: not a regular file of {} bytes, as metadata.json records", path.string(), m.size);
  std::vector<snapshot::sparse::Range> data{{0, m.size}};
  EntryPtr e = header_for(m);
  if (m.sparse) {
    KILN_ASSIGN_OR_RETURN(data, snapshot::sparse::data_extents(fd.get(), m.size, path));
    for (const auto& r : data)
      archive_entry_sparse_add_entry(e.get(), static_cast<la_int64_t>(r.begin), static_cast<la_int64_t>(r.size()));
    if (data.empty()) archive_entry_sparse_add_entry(e.get(), static_cast<la_int64_t>(m.size), 0);
  }
  if (archive_write_header(a, e.get()) != ARCHIVE_OK) return archive_error(a, "packing " + m.name);
  static const std::array<char, kChunk> zeros{};
  std::vector<char> buf(kChunk);
  uint64_t at = 0;
  auto feed = [&](const char* p, size_t n) -> Result<void> {
    if (archive_write_data(a, p, n) != static_cast<la_ssize_t>(n)) return archive_error(a, "packing " + m.name);
    return {};
  };
  data.push_back({m.size, m.size});  // the trailing hole
  for (const auto& r : data) {
    for (; at < r.begin; at += std::min<uint64_t>(kChunk, r.begin - at))
      KILN_TRY(feed(zeros.data(), static_cast<size_t>(std::min<uint64_t>(kChunk, r.begin - at))));
    for (; at < r.end;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, r.end - at));
      KILN_TRY(snapshot::sparse::read_exact(fd.get(), buf.data(), n, at, path));
      KILN_TRY(feed(buf.data(), n));
      at += n;
    }
  }
  if (archive_write_finish_entry(a) != ARCHIVE_OK) return archive_error(a, "packing " + m.name);
  return {};
}

/// One member of the archive being unpacked, written at the offsets the archive gives.
Result<void> extract_member(archive* a, archive_entry* e, const Member& m, const std::filesystem::path& dir) {
  const std::string where = fmt::format("the snapshot archive's {}", m.name);
  if (archive_entry_filetype(e) != AE_IFREG) return make_error("{} is not a regular file", where);
  if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0 ||
      static_cast<uint64_t>(archive_entry_size(e)) != m.size)
    return make_error("{} is not {} bytes long, as its metadata says", where, m.size);
  const auto path = dir / m.name;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) return make_error("unpacking into {}: {}", path.string(), std::strerror(errno));
  if (::ftruncate(fd.get(), static_cast<off_t>(m.size)) != 0)
    return make_error("unpacking into {}: {}", path.string(), std::strerror(errno));
  for (;;) {
    const void* block = nullptr;
    size_t n = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(a, &block, &n, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK) return archive_error(a, "reading " + where);
    if (offset < 0 || static_cast<uint64_t>(offset) > m.size || n > m.size - static_cast<uint64_t>(offset))
      return make_error("{} writes past its size", where);
    KILN_TRY(snapshot::sparse::write_exact(fd.get(), static_cast<const char*>(block), n,
                                           static_cast<uint64_t>(offset), path));
  }
  return {};
}

Result<std::string> read_small_member(archive* a, uint64_t limit, const std::string& where) {
  std::string out;
  std::array<char, 4096> buf{};
  for (;;) {
    la_ssize_t n = archive_read_data(a, buf.data(), buf.size());
    if (n < 0) return archive_error(a, "reading " + where);
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > limit) return make_error("{} is larger than {} bytes", where, limit);
    out.append(buf.data(), static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

Result<void> pack_snapshot(const std::filesystem::path& dir, const Metadata& meta, const std::filesystem::path& out) {
  struct stat st {};
  const auto metadata_path = dir / layout::kMetadataFile;
  if (::lstat(metadata_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return make_error("packing {}: {}", metadata_path.string(), std::strerror(errno));
  ArchivePtr a(archive_write_new());
  if (!a) return make_error("out of memory starting an archive");
  if (archive_write_set_format_pax_restricted(a.get()) != ARCHIVE_OK ||
      archive_write_add_filter_zstd(a.get()) != ARCHIVE_OK ||
      archive_write_open_filename(a.get(), out.c_str()) != ARCHIVE_OK)
    return archive_error(a.get(), "writing " + out.string());
  for (const Member& m : members_of(meta, static_cast<uint64_t>(st.st_size))) KILN_TRY(write_member(a.get(), dir, m));
  if (archive_write_close(a.get()) != ARCHIVE_OK) return archive_error(a.get(), "writing " + out.string());
  return {};
}

Result<Metadata> unpack_snapshot(const std::filesystem::path& file, std::string_view metadata_json,
                                 const std::filesystem::path& dir) {
  KILN_ASSIGN_OR_RETURN(Metadata meta, snapshot::parse_metadata(metadata_json));
  ArchivePtr a(archive_read_new());
  if (!a) return make_error("out of memory starting an archive");
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_zstd(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), kChunk) != ARCHIVE_OK)
    return archive_error(a.get(), "opening the snapshot archive");
  for (const Member& m : members_of(meta, metadata_json.size())) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) return make_error("the snapshot archive ends before its member {}", m.name);
    if (r != ARCHIVE_OK) return archive_error(a.get(), "reading the snapshot archive");
    const char* name = archive_entry_pathname(e);
    if (!name || m.name != name)
      return make_error("the snapshot archive holds '{}' where {} belongs", name ? std::string(name).substr(0, 100) : "",
                        m.name);
    if (m.name == layout::kMetadataFile) {
      KILN_ASSIGN_OR_RETURN(auto text, read_small_member(a.get(), snapshot::kMaxMetadataBytes, "its metadata.json"));
      if (text != metadata_json)
        return make_error("the snapshot archive's metadata.json differs from the one its manifest's config records");
      UniqueFd fd(::open((dir / m.name).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
      if (!fd) return make_error("unpacking into {}: {}", dir.string(), std::strerror(errno));
      KILN_TRY(snapshot::sparse::write_exact(fd.get(), text.data(), text.size(), 0, dir / m.name));
      continue;
    }
    KILN_TRY(extract_member(a.get(), e, m, dir));
  }
  archive_entry* extra = nullptr;
  if (archive_read_next_header(a.get(), &extra) != ARCHIVE_EOF)
    return make_error("the snapshot archive holds more than the snapshot's files");
  return meta;
}

}  // namespace kiln::remote
