// A snapshot's files as one tar+zstd archive (remote/snapshot_archive.h): holes stay
// holes and are not stored, and unpacking refuses archives that do not match the
// metadata they come with.
#include "remote/snapshot_archive.h"

#include "common/digest.h"
#include "common/fs.h"
#include "snapshot/layout.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

namespace kiln::remote {
namespace {

constexpr uint64_t kMemory = 64ull << 20;

class SnapshotArchive : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-archive-test-");
    ASSERT_TRUE(d);
    tmp_.emplace(std::move(*d));
    src_ = tmp_->path() / "src";
    std::filesystem::create_directories(src_);
    std::ofstream(src_ / "state.bin") << "registers and devices";
    int fd = ::open((src_ / "memory.ram").c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_EQ(::ftruncate(fd, kMemory), 0);
    const std::string page(4096, 'p');
    for (off_t at : {off_t{0}, off_t{12 << 20}, off_t{(64 << 20) - 4096}})
      ASSERT_EQ(::pwrite(fd, page.data(), page.size(), at), 4096);
    ::close(fd);
    meta_.key.image = "default";
    meta_.key.memory_mib = 64;
    meta_.key.vcpus = 1;
    meta_.key.engine = "test";
    meta_.key.baked_by_version = "0";
    meta_.created = "1970-01-01T00:00:00Z";
    meta_.state = {"state.bin", 21, *digest_file(src_ / "state.bin")};
    meta_.memory = {"memory.ram", kMemory, *digest_sparse_file(src_ / "memory.ram")};
    json_ = snapshot::to_json(meta_);
    std::ofstream(src_ / "metadata.json") << json_;
  }
  std::filesystem::path out(const std::string& name) {
    auto d = tmp_->path() / name;
    std::filesystem::create_directories(d);
    return d;
  }

  std::optional<fs::TempDir> tmp_;
  std::filesystem::path src_;
  snapshot::Metadata meta_;
  std::string json_;
};

TEST_F(SnapshotArchive, UnpacksToTheSameFilesWithHolesAndStoresOnlyData) {
  const auto archive = tmp_->path() / "files.tar.zst";
  ASSERT_TRUE(pack_snapshot(src_, meta_, archive));
  EXPECT_LT(std::filesystem::file_size(archive), 64u << 10);  // 3 pages of a 64 MiB guest
  const auto dest = out("dest");
  auto meta = unpack_snapshot(archive, json_, dest);
  ASSERT_TRUE(meta) << meta.error().message;
  EXPECT_EQ(*meta, meta_);
  EXPECT_EQ(*digest_sparse_file(dest / "memory.ram"), meta_.memory.digest);
  EXPECT_EQ(*digest_file(dest / "state.bin"), meta_.state.digest);
  struct stat st {};
  ASSERT_EQ(::stat((dest / "memory.ram").c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 1u << 20) << "the holes were written out";
  // The same snapshot packs to the same bytes (a re-push uploads nothing).
  const auto again = tmp_->path() / "again.tar.zst";
  ASSERT_TRUE(pack_snapshot(src_, meta_, again));
  EXPECT_EQ(*digest_file(archive), *digest_file(again));
}

TEST_F(SnapshotArchive, MetadataOtherThanTheConfigsIsRefused) {
  const auto archive = tmp_->path() / "files.tar.zst";
  ASSERT_TRUE(pack_snapshot(src_, meta_, archive));
  auto other = meta_;
  other.key.engine = "another";
  auto r = unpack_snapshot(archive, snapshot::to_json(other), out("dest"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("differs from the one its manifest's config records"), std::string::npos)
      << r.error().message;
}

// An archive written here by hand, member by member.
void write_archive(const std::filesystem::path& path,
                   const std::vector<std::tuple<std::string, std::string, int64_t>>& members) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter_zstd(a);
  archive_write_open_filename(a, path.c_str());
  for (const auto& [name, data, size] : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, size);
    archive_write_header(a, e);
    archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

TEST_F(SnapshotArchive, MembersOutOfPlaceOrSizeAreRefused) {
  const std::string state = "registers and devices";
  const auto archive = tmp_->path() / "bad.tar.zst";
  const int64_t json_size = static_cast<int64_t>(json_.size());
  // A member named to escape the directory.
  write_archive(archive, {{"metadata.json", json_, json_size}, {"../state.bin", state, 21}});
  EXPECT_FALSE(unpack_snapshot(archive, json_, out("a")));
  EXPECT_FALSE(std::filesystem::exists(tmp_->path() / "state.bin"));
  // The right names in the wrong order.
  write_archive(archive, {{"state.bin", state, 21}, {"metadata.json", json_, json_size}});
  EXPECT_FALSE(unpack_snapshot(archive, json_, out("b")));
  // A memory file of another size than the metadata's.
  write_archive(archive, {{"metadata.json", json_, json_size}, {"state.bin", state, 21}, {"memory.ram", "x", 1}});
  auto sized = unpack_snapshot(archive, json_, out("c"));
  ASSERT_FALSE(sized);
  EXPECT_NE(sized.error().message.find("is not " + std::to_string(kMemory) + " bytes"), std::string::npos)
      << sized.error().message;
  // A member missing.
  write_archive(archive, {{"metadata.json", json_, json_size}, {"state.bin", state, 21}});
  auto truncated = unpack_snapshot(archive, json_, out("d"));
  ASSERT_FALSE(truncated);
  EXPECT_NE(truncated.error().message.find("ends before its member memory.ram"), std::string::npos)
      << truncated.error().message;
  // One member too many (libarchive pads the short memory member with zeros).
  write_archive(archive, {{"metadata.json", json_, json_size},
                          {"state.bin", state, 21},
                          {"memory.ram", "x", static_cast<int64_t>(kMemory)},
                          {"extra", "y", 1}});
  auto extra = unpack_snapshot(archive, json_, out("f"));
  ASSERT_FALSE(extra);
  EXPECT_NE(extra.error().message.find("more than the snapshot's files"), std::string::npos) << extra.error().message;
  // Not an archive at all.
  std::ofstream(archive, std::ios::trunc) << "not a tar";
  EXPECT_FALSE(unpack_snapshot(archive, json_, out("e")));
}

}  // namespace
}  // namespace kiln::remote
