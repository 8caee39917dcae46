// A real directory tree on this host, in a fresh temp directory removed afterwards,
// for share tests to serve: files, directories, symlinks and the special files a
// share must hide.
#pragma once

#include "common/fs.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

namespace kiln::share::testing {

class HostTree {
 public:
  HostTree() {
    auto d = fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-share-test-");
    EXPECT_TRUE(d.ok()) << (d.ok() ? "" : d.error().message);
    if (d) dir_.emplace(std::move(*d));
  }
  const std::filesystem::path& path() const { return dir_->path(); }
  std::filesystem::path operator/(const std::string& rel) const { return path() / rel; }

  void file(const std::string& rel, const std::string& content) const {
    std::filesystem::create_directories((path() / rel).parent_path());
    std::ofstream(path() / rel, std::ios::binary | std::ios::trunc) << content;
  }
  void dir(const std::string& rel) const { std::filesystem::create_directories(path() / rel); }
  void symlink(const std::string& rel, const std::string& target) const {
    std::filesystem::create_symlink(target, path() / rel);
  }
  void fifo(const std::string& rel) const { ASSERT_EQ(::mkfifo((path() / rel).c_str(), 0644), 0); }
  /// A bound unix socket (the fd is closed; the socket file stays).
  void socket(const std::string& rel) const {
    const std::string p = (path() / rel).string();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    ASSERT_LT(p.size(), sizeof addr.sun_path);
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    ::close(fd);
  }
  /// Replace `rel` by a new file (a new inode) the way editors and build tools do:
  /// write beside it, rename over it.
  void replace(const std::string& rel, const std::string& content) const {
    file(rel + ".new", content);
    std::filesystem::rename(path() / (rel + ".new"), path() / rel);
  }

 private:
  std::optional<fs::TempDir> dir_;
};

}  // namespace kiln::share::testing
