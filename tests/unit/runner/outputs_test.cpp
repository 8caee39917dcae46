// KILN_OUTPUT_DIR's round trip without a VM: the agent's tar writer over a real tree,
// the host's extraction into an output directory, and what each refuses.
#include "runner/outputs.h"

#include "agent/outputs.h"
#include "common/fs.h"
#include "tests/unit/rootfs/rootfs_test_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

namespace kiln::runner {
namespace {

namespace stdfs = std::filesystem;
using rootfs::testing::Compression;
using rootfs::testing::write_layer;

std::string slurp(const stdfs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write(const stdfs::path& p, const std::string& text) {
  stdfs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

class Outputs : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-outputs-test-");
    ASSERT_TRUE(dir.ok());
    tmp_.emplace(std::move(*dir));
  }
  stdfs::path path(const std::string& name) const { return tmp_->path() / name; }

  // What the agent sends for `guest_dir` with `cap`, as a tar file; `sent` gets its summary.
  stdfs::path agent_stream(const stdfs::path& guest_dir, uint64_t cap, proto::Collected* sent) {
    std::string stream;
    auto sink = [&](std::string_view chunk) {
      EXPECT_LE(chunk.size(), 64u << 10);
      stream.append(chunk);
      return agent::Status::ok();
    };
    agent::Status s = agent::write_outputs(proto::Collect{guest_dir.string(), cap}, sink, sent);
    EXPECT_TRUE(s.is_ok()) << s.message();
    const auto tar = path("stream.tar");
    write(tar, stream);
    return tar;
  }

  std::optional<fs::TempDir> tmp_;
};

TEST_F(Outputs, ATreeComesBackWithItsFilesDirectoriesAndSymlinksAsTheyAre) {
  const auto guest = path("guest");
  write(guest / "report.txt", "all good\n");
  write(guest / "logs/deep/run.log", std::string(100000, 'x'));
  write(guest / std::string(120, 'n') / std::string(90, 'f'), "a long path");
  ASSERT_EQ(::symlink("/etc/shadow", (guest / "shadow").c_str()), 0);
  ASSERT_EQ(::symlink("logs", (guest / "logs-link").c_str()), 0);
  ASSERT_EQ(::mkfifo((guest / "pipe").c_str(), 0644), 0);
  ASSERT_EQ(::chmod((guest / "report.txt").c_str(), 0751), 0);

  proto::Collected sent;
  const auto tar = agent_stream(guest, 1 << 20, &sent);
  EXPECT_EQ(sent.left_out, 1u) << sent.note;
  EXPECT_NE(sent.note.find("pipe (not a regular file, directory or symlink)"), std::string::npos) << sent.note;

  const auto host = path("host");
  ASSERT_TRUE(prepare_output_dir(host).ok());
  auto report = extract_outputs(tar, host, 1 << 20);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->left_out, 0u) << report->note;
  EXPECT_EQ(slurp(host / "report.txt"), "all good\n");
  EXPECT_EQ(stdfs::status(host / "report.txt").permissions() & stdfs::perms::all,
            stdfs::perms::owner_all | stdfs::perms::group_read | stdfs::perms::group_exec | stdfs::perms::others_exec);
  EXPECT_EQ(slurp(host / "logs/deep/run.log"), std::string(100000, 'x'));
  EXPECT_EQ(slurp(host / std::string(120, 'n') / std::string(90, 'f')), "a long path");
  // Links stay links: the host's /etc/shadow is never read, nor anything else followed.
  EXPECT_TRUE(stdfs::is_symlink(host / "shadow"));
  EXPECT_EQ(stdfs::read_symlink(host / "shadow"), "/etc/shadow");
  EXPECT_TRUE(stdfs::is_symlink(host / "logs-link"));
  EXPECT_FALSE(stdfs::exists(host / "pipe"));
  EXPECT_EQ(report->bytes, 9u + 100000u + 11u);
}

TEST_F(Outputs, WhatIsOverTheCapIsNamedAndNotSent) {
  const auto guest = path("guest");
  write(guest / "small", "12345");
  write(guest / "big", std::string(2 << 20, 'b'));
  proto::Collected sent;
  const auto tar = agent_stream(guest, 1 << 20, &sent);
  EXPECT_EQ(sent.bytes, 5u);
  EXPECT_EQ(sent.left_out, 1u);
  EXPECT_NE(sent.note.find("big (2097152 bytes: over the outputs cap)"), std::string::npos) << sent.note;
  EXPECT_LT(stdfs::file_size(tar), 64u << 10) << "the stream carried the file it left out";
}

TEST_F(Outputs, AMissingGuestDirectoryIsAnEmptyStream) {
  proto::Collected sent;
  const auto tar = agent_stream(path("nothing-here"), 1 << 20, &sent);
  EXPECT_EQ(sent.entries, 0u);
  EXPECT_EQ(stdfs::file_size(tar), 1024u);
  ASSERT_TRUE(prepare_output_dir(path("host")).ok());
  auto report = extract_outputs(tar, path("host"), 1 << 20);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->entries, 0u);
}

// A stream no agent of ours writes: the host checks each entry itself.
TEST_F(Outputs, AHostileStreamWritesNothingOutsideTheDirectoryNorThroughALink) {
  using namespace rootfs::testing;
  write(path("outside/secret"), "keep");
  const auto blob = write_layer(tmp_->path(), "hostile",
                                {file("../escaped", "x"), file("/absolute", "x"), file("a/../../escaped2", "x"),
                                 symlink("out", path("outside").string()), file("out/secret", "overwritten"),
                                 file("out/new", "x"), hardlink("hard", "/etc/passwd"), file("ok", "fine"),
                                 file("ok", "second copy"), Member{"dev", Type::chardev, {}, {}, 0, 0, 0644, {}}},
                                Compression::none);
  const auto host = path("host");
  ASSERT_TRUE(prepare_output_dir(host).ok());
  auto report = extract_outputs(blob.path, host, 1 << 20);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(slurp(path("outside/secret")), "keep");
  EXPECT_FALSE(stdfs::exists(path("outside/new")));
  EXPECT_FALSE(stdfs::exists(path("escaped")));
  EXPECT_FALSE(stdfs::exists(tmp_->path().parent_path() / "escaped2"));
  EXPECT_FALSE(stdfs::exists(host / "hard"));
  EXPECT_FALSE(stdfs::exists(host / "dev"));
  EXPECT_EQ(slurp(host / "ok"), "fine") << "a second entry of one name replaced the first";
  EXPECT_TRUE(stdfs::is_symlink(host / "out"));
  EXPECT_EQ(report->entries, 2u);  // "out" and the first "ok"
  EXPECT_EQ(report->left_out, 8u) << report->note;
}

TEST_F(Outputs, TheHostCapHoldsWhateverTheStreamSays) {
  using namespace rootfs::testing;
  const auto blob = write_layer(tmp_->path(), "big", {file("a", std::string(600, 'a')), file("b", std::string(600, 'b'))},
                                Compression::none);
  ASSERT_TRUE(prepare_output_dir(path("host")).ok());
  auto report = extract_outputs(blob.path, path("host"), 1000);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_TRUE(stdfs::exists(path("host/a")));
  EXPECT_FALSE(stdfs::exists(path("host/b")));
  EXPECT_EQ(report->left_out, 1u);
}

TEST_F(Outputs, KilnEmptiesOnlyAnOutputDirectoryOfItsOwn) {
  const auto mine = path("deep/mine");
  ASSERT_TRUE(prepare_output_dir(mine).ok()) << "a missing directory is made, parents too";
  EXPECT_TRUE(stdfs::exists(mine / kOutputDirMarker));
  write(mine / "old/result", "from the last run");
  write(path("kept"), "not kiln's");
  ASSERT_EQ(::symlink(path("kept").c_str(), (mine / "link").c_str()), 0);
  ASSERT_TRUE(prepare_output_dir(mine).ok());
  EXPECT_FALSE(stdfs::exists(mine / "old"));
  EXPECT_FALSE(stdfs::is_symlink(mine / "link"));
  EXPECT_EQ(slurp(path("kept")), "not kiln's") << "emptying followed a symlink";

  write(path("users/notes.txt"), "mine");
  auto refused = prepare_output_dir(path("users"));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("is not empty and kiln did not make it"), std::string::npos);
  EXPECT_EQ(slurp(path("users/notes.txt")), "mine");
  ASSERT_TRUE(prepare_output_dir(path("users/notes.txt")).ok() == false);
}

}  // namespace
}  // namespace kiln::runner
