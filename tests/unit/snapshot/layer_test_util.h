// Helpers for the layer tests: guest RAM images held in memory as the expected truth,
// written to disk sparsely like an engine would, and layers published over them.
#pragma once

#include "snapshot/diff_index.h"
#include "snapshot/store.h"
#include "snapshot_test_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace kiln::snapshot::testing {

inline constexpr uint64_t kPage = kPageSize;

/// Guest RAM content: kMemBytes bytes, zero unless set.
struct Image {
  std::string bytes = std::string(kMemBytes, '\0');
  void fill_page(uint64_t page, char c) { std::memset(bytes.data() + page * kPage, c, kPage); }
  void zero_page(uint64_t page) { fill_page(page, 0); }
  void poke(uint64_t offset, char c) { bytes[offset] = c; }
};

/// Write `img` as a sparse file: only non-zero pages are written (runs in one pwrite),
/// the rest are holes.
inline void write_image(const stdfs::path& path, const Image& img) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(img.bytes.size())), 0);
  auto zero_page = [&](uint64_t off) {
    const char* p = img.bytes.data() + off;
    for (uint64_t i = 0; i < kPage; ++i)
      if (p[i] != 0) return false;
    return true;
  };
  for (uint64_t off = 0; off < img.bytes.size();) {
    if (zero_page(off)) {
      off += kPage;
      continue;
    }
    uint64_t end = off + kPage;
    while (end < img.bytes.size() && !zero_page(end)) end += kPage;
    ASSERT_EQ(::pwrite(fd, img.bytes.data() + off, end - off, static_cast<off_t>(off)), static_cast<ssize_t>(end - off));
    off = end;
  }
  ::close(fd);
}

/// A golden whose memory.ram is `img`.
inline Snapshot publish_golden(const Store& store, const SnapshotKey& key, const Image& img) {
  auto bake = store.begin_bake(key);
  EXPECT_TRUE(bake.ok()) << bake.error().message;
  write_text(bake->files().state, std::string(5000, 'G'));
  write_image(bake->files().memory, img);
  auto snap = store.publish(std::move(bake).value(), key);
  EXPECT_TRUE(snap.ok()) << snap.error().message;
  return snap.ok() ? snap.value() : Snapshot{};
}

inline LayerKey layer_key(const Snapshot& parent, const std::string& digest, const std::string& kind = "payload") {
  return LayerKey{parent.id(), kind, digest, "/usr/bin/test-" + digest};
}

/// Play runner + engine: a layer over `parent` whose complete RAM is `img`.
inline Result<Snapshot> try_publish_layer(const Store& store, const Snapshot& parent, const LayerKey& key,
                                          const Image& img, bool keep_flat) {
  auto bake = store.begin_layer(key);
  if (!bake) return bake.error();
  write_text(bake->files().state, "state of " + key.content_digest);
  write_image(bake->files().memory, img);
  return store.publish_layer(std::move(bake).value(), key, parent, keep_flat);
}

inline Snapshot publish_layer(const Store& store, const Snapshot& parent, const LayerKey& key, const Image& img,
                              bool keep_flat = false) {
  auto snap = try_publish_layer(store, parent, key, img, keep_flat);
  EXPECT_TRUE(snap.ok()) << snap.error().message;
  return snap.ok() ? snap.value() : Snapshot{};
}

/// What the kvm engine would map: the root file with each overlay's extents copied over.
inline std::string apply_overlays(const vmm::SnapshotFiles& files) {
  std::string ram = read_text(files.memory);
  for (const auto& o : files.overlays) {
    std::string pages = read_text(o.file);
    for (const auto& e : o.extents) {
      EXPECT_LE(e.guest_offset + e.length, ram.size());
      EXPECT_LE(e.file_offset + e.length, pages.size());
      if (e.guest_offset + e.length > ram.size() || e.file_offset + e.length > pages.size()) continue;
      ram.replace(e.guest_offset, e.length, pages, e.file_offset, e.length);
    }
  }
  return ram;
}

/// Flip one byte of a file in place.
inline void flip(const stdfs::path& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(offset)), 1);
  c = static_cast<char>(c ^ 0x5a);
  ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

}  // namespace kiln::snapshot::testing
