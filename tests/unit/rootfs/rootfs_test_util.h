// Layer tarballs written with libarchive for the rootfs tests, and a squashfs image read
// back through sqfs2tar (squashfs-tools-ng) into a map of what it holds.
#pragma once

#include "common/fs.h"
#include "common/subprocess.h"
#include "image/oci/image.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kiln::rootfs::testing {

enum class Type { file, dir, symlink, hardlink, chardev, fifo };

/// One member of a test layer. `link` is a symlink's target or a hard link's target path.
struct Member {
  std::string path;
  Type type = Type::file;
  std::string data;
  std::string link;
  int64_t uid = 0, gid = 0;
  mode_t perm = 0644;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

inline Member file(std::string path, std::string data, int64_t uid = 0, mode_t perm = 0644) {
  return Member{std::move(path), Type::file, std::move(data), {}, uid, uid, perm, {}};
}
inline Member dir(std::string path, int64_t uid = 0, mode_t perm = 0755) {
  return Member{std::move(path), Type::dir, {}, {}, uid, uid, perm, {}};
}
inline Member symlink(std::string path, std::string target) {
  return Member{std::move(path), Type::symlink, {}, std::move(target), 0, 0, 0777, {}};
}
inline Member hardlink(std::string path, std::string target) {
  return Member{std::move(path), Type::hardlink, {}, std::move(target), 0, 0, 0644, {}};
}

enum class Compression { none, gzip, zstd };

/// Write `members` as a pax tarball `<dir>/<name>.tar[.gz|.zst]`, as a layer blob.
inline image::LayerBlob write_layer(const std::filesystem::path& dir, const std::string& name,
                                    const std::vector<Member>& members, Compression c = Compression::gzip) {
  std::string ext = c == Compression::gzip ? ".tar.gz" : c == Compression::zstd ? ".tar.zst" : ".tar";
  auto path = dir / (name + ext);
  std::unique_ptr<archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
  EXPECT_EQ(archive_write_set_format_pax(a.get()), ARCHIVE_OK);
  if (c == Compression::gzip) {
    EXPECT_EQ(archive_write_add_filter_gzip(a.get()), ARCHIVE_OK);
  } else if (c == Compression::zstd) {
    EXPECT_EQ(archive_write_add_filter_zstd(a.get()), ARCHIVE_OK);
  }
  EXPECT_EQ(archive_write_open_filename(a.get(), path.c_str()), ARCHIVE_OK) << archive_error_string(a.get());
  for (const auto& m : members) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(e.get(), m.path.c_str());
    archive_entry_set_uid(e.get(), m.uid);
    archive_entry_set_gid(e.get(), m.gid);
    archive_entry_set_mtime(e.get(), 1700000000, 0);
    mode_t type = AE_IFREG;
    switch (m.type) {
      case Type::file: type = AE_IFREG; break;
      case Type::dir: type = AE_IFDIR; break;
      case Type::symlink: type = AE_IFLNK; archive_entry_set_symlink(e.get(), m.link.c_str()); break;
      case Type::hardlink: type = AE_IFREG; archive_entry_set_hardlink(e.get(), m.link.c_str()); break;
      case Type::chardev: type = AE_IFCHR; archive_entry_set_rdev(e.get(), makedev(1, 3)); break;
      case Type::fifo: type = AE_IFIFO; break;
    }
    archive_entry_set_filetype(e.get(), type);
    archive_entry_set_perm(e.get(), m.perm);
    archive_entry_set_size(e.get(), m.type == Type::file ? static_cast<la_int64_t>(m.data.size()) : 0);
    for (const auto& [k, v] : m.xattrs) archive_entry_xattr_add_entry(e.get(), k.c_str(), v.data(), v.size());
    EXPECT_EQ(archive_write_header(a.get(), e.get()), ARCHIVE_OK) << m.path << ": " << archive_error_string(a.get());
    if (!m.data.empty()) {
      EXPECT_EQ(archive_write_data(a.get(), m.data.data(), m.data.size()), static_cast<la_ssize_t>(m.data.size()));
    }
  }
  EXPECT_EQ(archive_write_close(a.get()), ARCHIVE_OK);
  image::LayerBlob blob;
  blob.digest = "sha256:test-" + name;
  blob.path = path;
  blob.size = std::filesystem::file_size(path);
  return blob;
}

/// One inode of the image as sqfs2tar shows it.
struct Seen {
  mode_t type = 0;  ///< AE_IFREG, AE_IFDIR, AE_IFLNK
  mode_t perm = 0;
  int64_t uid = -1, gid = -1;
  std::string data;
  std::string symlink;
  std::string hardlink;  ///< set when sqfs2tar wrote this name as a hard link to an earlier one
  std::map<std::string, std::string> xattrs;
};

/// Everything in the squashfs image `disk`, by path (no leading "./"), via sqfs2tar.
inline std::map<std::string, Seen> read_disk(const std::filesystem::path& disk) {
  std::map<std::string, Seen> out;
  auto run = run_captured({"sqfs2tar", disk.string()}, 256 << 20);
  EXPECT_TRUE(run.ok()) << (run.ok() ? "" : run.error().message);
  if (!run.ok()) return out;
  EXPECT_EQ(run->exit_code, 0) << run->err;
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  EXPECT_EQ(archive_read_open_memory(a.get(), run->out.data(), run->out.size()), ARCHIVE_OK);
  archive_entry* e = nullptr;
  while (archive_read_next_header(a.get(), &e) == ARCHIVE_OK) {
    std::string path = archive_entry_pathname(e);
    while (path.starts_with("./")) path.erase(0, 2);
    if (!path.empty() && path.back() == '/') path.pop_back();
    Seen s;
    s.type = archive_entry_filetype(e);
    s.perm = archive_entry_perm(e);
    s.uid = archive_entry_uid(e);
    s.gid = archive_entry_gid(e);
    if (const char* l = archive_entry_symlink(e)) s.symlink = l;
    if (const char* h = archive_entry_hardlink(e)) s.hardlink = h;
    archive_entry_xattr_reset(e);
    const char* k = nullptr;
    const void* v = nullptr;
    size_t n = 0;
    while (archive_entry_xattr_next(e, &k, &v, &n) == ARCHIVE_OK) s.xattrs[k] = std::string(static_cast<const char*>(v), n);
    char buf[65536];
    la_ssize_t got;
    while ((got = archive_read_data(a.get(), buf, sizeof buf)) > 0) s.data.append(buf, static_cast<size_t>(got));
    out[path] = std::move(s);
  }
  return out;
}

/// The names in a directory (to show nothing else was written there).
inline std::vector<std::string> names_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace kiln::rootfs::testing
