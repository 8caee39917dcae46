#include "vmm/kvm/guest_memory.h"

#include "common/fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <limits>
#include <memory>
#include <string>

using namespace kiln;
using kiln::vmm::MemoryExtent;
using kiln::vmm::MemoryOverlay;
using kiln::vmm::kvm::GuestMemory;
using kiln::vmm::kvm::kPageSize;

namespace {

constexpr uint64_t kMiB = 1 << 20;

class GuestMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-kvm-base-test-");
    ASSERT_TRUE(d.ok()) << d.error().message;
    dir_ = std::make_unique<fs::TempDir>(std::move(*d));
  }
  std::filesystem::path path(const char* name) const { return dir_->path() / name; }

  // A file of `size` bytes where page i (for i < pages) is filled with byte `fill + i`.
  void make_file(const std::filesystem::path& p, uint64_t size, uint64_t pages, uint8_t fill) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    for (uint64_t i = 0; i < pages; ++i) {
      std::string page(kPageSize, static_cast<char>(fill + i));
      ASSERT_EQ(::pwrite(fd, page.data(), page.size(), static_cast<off_t>(i * kPageSize)),
                static_cast<ssize_t>(kPageSize));
    }
    ::close(fd);
  }
  std::string read_whole(const std::filesystem::path& p) {
    auto r = fs::read_file(p, 64 * kMiB);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : std::string();
  }
  uint8_t byte_at(const GuestMemory& m, uint64_t gpa) {
    uint8_t b = 0xEE;
    EXPECT_TRUE(m.read(gpa, &b, 1));
    return b;
  }

  std::unique_ptr<fs::TempDir> dir_;
};

}  // namespace

TEST_F(GuestMemoryTest, AnonymousIsZeroedAndRoundTrips) {
  auto m = GuestMemory::anonymous(kMiB);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->size(), kMiB);
  EXPECT_FALSE(m->is_shared_file());
  EXPECT_EQ(byte_at(*m, 12345), 0);
  const char msg[] = "hello guest";
  ASSERT_TRUE(m->write(4090, msg, sizeof msg));  // straddles a page boundary
  char back[sizeof msg] = {};
  ASSERT_TRUE(m->read(4090, back, sizeof back));
  EXPECT_STREQ(back, msg);
  EXPECT_EQ(m->host_base()[4090], 'h');
}

TEST_F(GuestMemoryTest, RejectsBadSizes) {
  EXPECT_FALSE(GuestMemory::anonymous(0).ok());
  EXPECT_FALSE(GuestMemory::anonymous(kPageSize + 1).ok());
  EXPECT_FALSE(GuestMemory::anonymous(std::numeric_limits<uint64_t>::max() & ~(kPageSize - 1)).ok());
  EXPECT_FALSE(GuestMemory::create_shared(path("m"), 100).ok());
}

TEST_F(GuestMemoryTest, BoundsAtTheEdgeOfRamAndWrapAround) {
  auto m = GuestMemory::anonymous(2 * kPageSize);
  ASSERT_TRUE(m.ok());
  const uint64_t size = m->size();
  uint8_t buf[16] = {};
  EXPECT_TRUE(m->read(size - 16, buf, 16));
  EXPECT_TRUE(m->write(size - 1, buf, 1));
  EXPECT_FALSE(m->read(size - 15, buf, 16));
  EXPECT_FALSE(m->write(size, buf, 1));
  EXPECT_TRUE(m->read(size, buf, 0));  // empty range at the end is inside
  EXPECT_FALSE(m->read(size + 1, buf, 0));
  ASSERT_TRUE(m->slice(0, size).has_value());
  EXPECT_EQ(m->slice(0, size)->size(), size);
  EXPECT_FALSE(m->slice(0, size + 1).has_value());
  EXPECT_FALSE(m->slice(1, size).has_value());
  // gpa + len wraps around 2^64 to a small number: must not pass as "inside".
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_FALSE(m->slice(max, 2).has_value());
  EXPECT_FALSE(m->slice(max - 7, 16).has_value());
  EXPECT_FALSE(m->slice(16, max).has_value());
  EXPECT_FALSE(m->slice(max, max).has_value());
  EXPECT_FALSE(m->read(max, buf, 2));
  EXPECT_FALSE(m->write(8, buf, std::numeric_limits<size_t>::max()));
}

TEST_F(GuestMemoryTest, FailedAccessCopiesNothing) {
  auto m = GuestMemory::anonymous(kPageSize);
  ASSERT_TRUE(m.ok());
  uint8_t buf[8];
  std::memset(buf, 0xAB, sizeof buf);
  EXPECT_FALSE(m->write(kPageSize - 4, buf, 8));
  EXPECT_EQ(byte_at(*m, kPageSize - 4), 0);
  EXPECT_FALSE(m->read(kPageSize - 4, buf, 8));
  EXPECT_EQ(buf[0], 0xAB);
}

TEST_F(GuestMemoryTest, SharedWritesReachTheFile) {
  // Pre-existing content must be truncated away.
  make_file(path("ram"), 8 * kPageSize, 8, 'a');
  {
    auto m = GuestMemory::create_shared(path("ram"), 4 * kPageSize);
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_TRUE(m->is_shared_file());
    EXPECT_EQ(byte_at(*m, 0), 0);
    ASSERT_TRUE(m->write(kPageSize + 3, "xyz", 3));
  }
  std::string file = read_whole(path("ram"));
  ASSERT_EQ(file.size(), 4 * kPageSize);
  EXPECT_EQ(file.substr(kPageSize + 3, 3), "xyz");
  EXPECT_EQ(file[0], '\0');
}

TEST_F(GuestMemoryTest, CreateSharedNamesAnUnwritablePath) {
  auto m = GuestMemory::create_shared(path("no/such/dir/ram"), kPageSize);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("no/such/dir/ram"), std::string::npos);
}

TEST_F(GuestMemoryTest, PrivateMappingNeverModifiesTheBaseFile) {
  make_file(path("golden"), 4 * kPageSize, 4, 'a');
  const std::string before = read_whole(path("golden"));
  {
    auto m = GuestMemory::map_private(path("golden"), 4 * kPageSize);
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_FALSE(m->is_shared_file());
    EXPECT_EQ(byte_at(*m, 2 * kPageSize + 7), 'c');
    ASSERT_TRUE(m->write(2 * kPageSize + 7, "ZZZZ", 4));
    std::memset(m->host_base(), 0, kPageSize);
    EXPECT_EQ(byte_at(*m, 2 * kPageSize + 7), 'Z');
    // A second VM from the same golden sees the golden, not the first VM's writes.
    auto other = GuestMemory::map_private(path("golden"), 4 * kPageSize);
    ASSERT_TRUE(other.ok());
    EXPECT_EQ(byte_at(*other, 2 * kPageSize + 7), 'c');
    EXPECT_EQ(read_whole(path("golden")), before);
  }
  EXPECT_EQ(read_whole(path("golden")), before);
}

TEST_F(GuestMemoryTest, PrivateMappingChecksTheBaseFileSize) {
  make_file(path("golden"), 4 * kPageSize, 0, 0);
  auto shorter = GuestMemory::map_private(path("golden"), 8 * kPageSize);
  ASSERT_FALSE(shorter.ok());
  EXPECT_NE(shorter.error().message.find("rebake"), std::string::npos);
  EXPECT_FALSE(GuestMemory::map_private(path("golden"), 2 * kPageSize).ok());
  EXPECT_FALSE(GuestMemory::map_private(path("missing"), 4 * kPageSize).ok());
  EXPECT_FALSE(GuestMemory::map_private(dir_->path(), 4 * kPageSize).ok());  // a directory
}

TEST_F(GuestMemoryTest, OverlaysAppearAtTheirGuestOffsetsAndStackBottomUp) {
  make_file(path("golden"), 8 * kPageSize, 8, 'a');  // page i holds 'a'+i
  make_file(path("layer1"), 3 * kPageSize, 3, 'K');  // K L M
  make_file(path("layer2"), 1 * kPageSize, 1, 'x');  // x
  const std::string layer1 = read_whole(path("layer1"));
  std::vector<MemoryOverlay> overlays{
      {path("layer1"), {{1 * kPageSize, 0, kPageSize}, {5 * kPageSize, 1 * kPageSize, 2 * kPageSize}}},
      {path("layer2"), {{6 * kPageSize, 0, kPageSize}}},
  };
  auto m = GuestMemory::map_private(path("golden"), 8 * kPageSize, overlays);
  ASSERT_TRUE(m.ok()) << m.error().message;
  const char expected[] = "aKcdeLxh";  // page 6: layer2 over layer1 over golden
  for (uint64_t page = 0; page < 8; ++page) {
    EXPECT_EQ(byte_at(*m, page * kPageSize), expected[page]) << "page " << page;
    EXPECT_EQ(byte_at(*m, page * kPageSize + kPageSize - 1), expected[page]) << "page " << page;
  }
  // Overlays are copy-on-write too.
  ASSERT_TRUE(m->write(5 * kPageSize, "!", 1));
  EXPECT_EQ(read_whole(path("layer1")), layer1);
}

TEST_F(GuestMemoryTest, BadOverlaysAreRejectedWithTheirFileNamed) {
  make_file(path("golden"), 8 * kPageSize, 0, 0);
  make_file(path("layer"), 2 * kPageSize, 2, 'L');
  const uint64_t max = std::numeric_limits<uint64_t>::max() & ~(kPageSize - 1);
  const std::vector<std::vector<MemoryExtent>> bad{
      {{100, 0, kPageSize}},                                         // guest offset unaligned
      {{0, 100, kPageSize}},                                         // file offset unaligned
      {{0, 0, 100}},                                                 // length unaligned
      {{0, 0, 0}},                                                   // empty
      {{8 * kPageSize, 0, kPageSize}},                               // past guest RAM
      {{7 * kPageSize, 0, 2 * kPageSize}},                           // straddles the end of RAM
      {{max, 0, 2 * kPageSize}},                                     // guest offset + length wraps
      {{0, kPageSize, 2 * kPageSize}},                               // past the end of the layer file
      {{0, max, 2 * kPageSize}},                                     // file offset + length wraps
      {{2 * kPageSize, 0, kPageSize}, {0, kPageSize, kPageSize}},    // not sorted
      {{0, 0, 2 * kPageSize}, {kPageSize, 0, kPageSize}},            // overlapping
      {{kPageSize, 0, kPageSize}, {kPageSize, kPageSize, kPageSize}},  // duplicate
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    std::vector<MemoryOverlay> overlays{{path("layer"), bad[i]}};
    auto m = GuestMemory::map_private(path("golden"), 8 * kPageSize, overlays);
    ASSERT_FALSE(m.ok()) << "case " << i;
    EXPECT_NE(m.error().message.find(path("layer").string()), std::string::npos) << m.error().message;
    EXPECT_NE(m.error().message.find("rebake"), std::string::npos) << m.error().message;
  }
  std::vector<MemoryOverlay> missing{{path("nope"), {{0, 0, kPageSize}}}};
  EXPECT_FALSE(GuestMemory::map_private(path("golden"), 8 * kPageSize, missing).ok());
  // Adjacent extents are fine.
  std::vector<MemoryOverlay> adjacent{{path("layer"), {{0, 0, kPageSize}, {kPageSize, kPageSize, kPageSize}}}};
  EXPECT_TRUE(GuestMemory::map_private(path("golden"), 8 * kPageSize, adjacent).ok());
}

TEST_F(GuestMemoryTest, MoveTransfersTheMapping) {
  auto m = GuestMemory::anonymous(kPageSize);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(m->write(10, "q", 1));
  GuestMemory a = std::move(*m);
  EXPECT_EQ(m->size(), 0u);
  EXPECT_EQ(m->host_base(), nullptr);
  uint8_t b = 0;
  EXPECT_FALSE(m->read(0, &b, 1));
  EXPECT_EQ(byte_at(a, 10), 'q');
  auto other = GuestMemory::anonymous(2 * kPageSize);
  ASSERT_TRUE(other.ok());
  a = std::move(*other);  // unmaps the old one
  EXPECT_EQ(a.size(), 2 * kPageSize);
  EXPECT_EQ(byte_at(a, 10), 0);
}

TEST_F(GuestMemoryTest, SaveLeavesZeroPagesAsHoles) {
  const uint64_t size = 16 * kMiB;
  auto m = GuestMemory::anonymous(size);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(m->write(0, "first", 5));
  ASSERT_TRUE(m->write(3 * kMiB + 5 * kPageSize + 17, "middle", 6));
  ASSERT_TRUE(m->write(size - 1, "z", 1));
  ASSERT_TRUE(m->save_to(path("saved")).ok());

  struct stat st{};
  ASSERT_EQ(::stat(path("saved").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);
  // Three data pages; allow filesystem slack but far below 16 MiB.
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, 64 * kPageSize);
  std::string file = read_whole(path("saved"));
  ASSERT_EQ(file.size(), size);
  EXPECT_EQ(std::memcmp(file.data(), m->host_base(), size), 0);

  // A restore from the saved file sees the same RAM.
  auto again = GuestMemory::map_private(path("saved"), size);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(std::memcmp(again->host_base(), m->host_base(), size), 0);
}

TEST_F(GuestMemoryTest, SaveTruncatesAnExistingFile) {
  make_file(path("saved"), 8 * kPageSize, 8, 'a');
  auto m = GuestMemory::anonymous(2 * kPageSize);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(m->save_to(path("saved")).ok());
  EXPECT_EQ(read_whole(path("saved")), std::string(2 * kPageSize, '\0'));
}

TEST_F(GuestMemoryTest, SaveRefusesTheFileItIsMappedFrom) {
  auto shared = GuestMemory::create_shared(path("ram"), 2 * kPageSize);
  ASSERT_TRUE(shared.ok());
  ASSERT_TRUE(shared->write(0, "keep", 4));
  EXPECT_FALSE(shared->save_to(path("ram")).ok());
  EXPECT_EQ(byte_at(*shared, 0), 'k');

  make_file(path("layer"), kPageSize, 1, 'L');
  std::vector<MemoryOverlay> overlays{{path("layer"), {{0, 0, kPageSize}}}};
  auto priv = GuestMemory::map_private(path("ram"), 2 * kPageSize, overlays);
  ASSERT_TRUE(priv.ok());
  EXPECT_FALSE(priv->save_to(path("ram")).ok());
  EXPECT_FALSE(priv->save_to(path("layer")).ok());
  EXPECT_EQ(read_whole(path("layer")), std::string(kPageSize, 'L'));
  ASSERT_TRUE(priv->save_to(path("flat")).ok());
  std::string flat = read_whole(path("flat"));
  EXPECT_EQ(flat.substr(0, 4), "LLLL");
}

TEST_F(GuestMemoryTest, TouchingHolesOfATmpfsGoldenAllocatesNothingThere) {
  // A golden on tmpfs (/dev/shm is one on Linux): touching its holes through a private
  // mapping must not allocate tmpfs pages, or a full tmpfs makes those touches SIGBUS.
  struct stat shm {};
  if (::stat("/dev/shm", &shm) != 0 || !S_ISDIR(shm.st_mode)) GTEST_SKIP() << "no /dev/shm";
  auto d = fs::TempDir::create("/dev/shm", "kiln-kvm-base-test-");
  ASSERT_TRUE(d.ok()) << d.error().message;
  const auto golden = d->path() / "golden";
  make_file(golden, 8 * kMiB, 2, 'a');  // data in pages 0-1, then a 8 MiB - 8 KiB hole
  struct stat before {};
  ASSERT_EQ(::stat(golden.c_str(), &before), 0);
  auto m = GuestMemory::map_private(golden, 8 * kMiB);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(byte_at(*m, 1), 'a');
  EXPECT_EQ(byte_at(*m, kPageSize + 1), 'b');
  for (uint64_t at = 2 * kPageSize; at < 8 * kMiB; at += kPageSize) ASSERT_EQ(byte_at(*m, at), 0) << at;
  ASSERT_TRUE(m->write(4 * kMiB, "guest", 5));
  struct stat after {};
  ASSERT_EQ(::stat(golden.c_str(), &after), 0);
  EXPECT_EQ(after.st_blocks, before.st_blocks) << "reading or writing a hole allocated pages in the tmpfs file";
}
