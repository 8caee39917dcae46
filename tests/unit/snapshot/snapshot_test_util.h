// Helpers shared by the snapshot store unit tests.
#pragma once

#include "snapshot/key.h"
#include "snapshot/store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace kiln::snapshot::testing {

namespace stdfs = std::filesystem;

/// A fresh directory under /tmp, removed with everything in it when the test ends.
class TmpRoot {
 public:
  TmpRoot() {
    std::string tmpl = "/tmp/kiln-snapshot-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TmpRoot() {
    // publish_layer deletes a discarded image in a background thread; remove_all stops
    // at the first entry that thread removed under it, so go again until all is gone.
    for (int i = 0; i < 50 && stdfs::exists(path_); ++i) {
      std::error_code ec;
      stdfs::remove_all(path_, ec);
    }
  }
  TmpRoot(const TmpRoot&) = delete;
  TmpRoot& operator=(const TmpRoot&) = delete;
  const stdfs::path& path() const { return path_; }
  stdfs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  stdfs::path path_;
};

inline SnapshotKey sample_key() {
  SnapshotKey k;
  k.image = "default";
  k.image_digest = "0123456789abcdef0123456789abcdef";
  k.kernel_digest = "11111111111111111111111111111111";
  k.initramfs_digest = "22222222222222222222222222222222";
  k.memory_mib = 256;
  k.vcpus = 1;
  k.engine = "qemu-7.2.0/tcg";
  k.baked_by_version = "0.1.0";
  k.cmdline = "console=ttyS0 quiet";
  return k;
}

inline void write_text(const stdfs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  ASSERT_TRUE(out.good()) << path;
}

inline std::string read_text(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Write a sparse file of `size` bytes with a little data at a few offsets, like a guest
/// RAM image where the guest touched few pages.
inline void write_sparse(const stdfs::path& path, uint64_t size, char fill = 'R') {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  std::string page(4096, fill);
  for (uint64_t off : {uint64_t{0}, size / 2, size - 4096})
    ASSERT_EQ(::pwrite(fd, page.data(), page.size(), static_cast<off_t>(off)), 4096);
  ::close(fd);
}

inline constexpr uint64_t kMemBytes = 16ull << 20;

/// Play the engine: write state and memory files into a bake directory.
inline void fake_engine_bake(const vmm::SnapshotFiles& files, const std::string& state = std::string(100000, 'S')) {
  write_text(files.state, state);
  write_sparse(files.memory, kMemBytes);
}

/// begin_bake + fake engine + publish; fails the test on error.
inline Snapshot bake_and_publish(const Store& store, const SnapshotKey& key) {
  auto bake = store.begin_bake(key);
  EXPECT_TRUE(bake.ok()) << bake.error().message;
  fake_engine_bake(bake->files());
  auto snap = store.publish(std::move(bake).value(), key);
  EXPECT_TRUE(snap.ok()) << snap.error().message;
  return snap.ok() ? snap.value() : Snapshot{};
}

/// Set a file's mtime explicitly (nanosecond resolution), instead of sleeping.
inline void set_mtime(const stdfs::path& path, int64_t sec, long nsec) {
  struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << path;
}

/// Names directly under `dir`.
inline std::vector<std::string> names_in(const stdfs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : stdfs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace kiln::snapshot::testing
