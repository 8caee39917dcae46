// A FUSE session saved with a kept VM and resumed by another (kiln shell): the
// guest's node ids and open handles keep working where their files are the same,
// answer ESTALE / EBADF where they are not, and a saved path is never followed
// out of its root or through a symlink planted since.
#include "share/fuse_session.h"

#include "tests/unit/share/fuse_test_client.h"
#include "tests/unit/share/host_tree.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <optional>

namespace kiln::share {
namespace {

using testing::Client;
using testing::HostTree;
using testing::Reply;

FuseSession make_session(const HostTree& tree) {
  auto s = FuseSession::create({tree.path()}, {});
  EXPECT_TRUE(s.ok()) << s.error().message;
  return std::move(*s);
}

TEST(SessionState, NodesAndHandlesServeOnInTheResumedSession) {
  HostTree tree;
  tree.file("data/input.txt", "from the host\n");
  FuseSession first = make_session(tree);
  Client before(first);
  ASSERT_EQ(before.init().error, 0);
  const uint64_t data = before.walk("data");
  const uint64_t input = before.walk("data/input.txt");
  const uint64_t fh = before.open_ok(input);
  const uint64_t dir_fh = before.open_ok(data, FUSE_OPENDIR);
  const std::string state = first.save_state();

  FuseSession second = make_session(tree);
  ASSERT_TRUE(second.resume(state).ok());
  EXPECT_TRUE(second.initialized());  // the guest's kernel sends no second INIT
  EXPECT_EQ(second.minor(), first.minor());
  Client after(second);
  EXPECT_EQ(after.call(FUSE_GETATTR, input, std::string(sizeof(fuse_getattr_in), '\0')).error, 0);
  const Reply r = after.read(input, fh, 0, 4096);  // the handle opened before the save
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.payload, "from the host\n");
  EXPECT_EQ(after.release(data, dir_fh, FUSE_RELEASEDIR).error, 0);
  // Lookups under a resumed directory work, and new ids do not reuse old ones.
  tree.file("data/later.txt", "later\n");
  const fuse_entry_out later = after.entry(data, "later.txt");
  EXPECT_GT(later.nodeid, input);
  EXPECT_EQ(after.read_file(later.nodeid), "later\n");
}

TEST(SessionState, WhatChangedOnTheHostIsStaleNotSomethingElse) {
  HostTree tree;
  tree.file("a/kept.txt", "kept\n");
  tree.file("a/gone.txt", "gone\n");
  tree.file("a/swapped/x", "x\n");
  tree.file("outside/secret", "secret\n");
  FuseSession first = make_session(tree);
  Client before(first);
  ASSERT_EQ(before.init().error, 0);
  const uint64_t kept = before.walk("a/kept.txt");
  const uint64_t gone = before.walk("a/gone.txt");
  const uint64_t swapped = before.walk("a/swapped");
  const uint64_t gone_fh = before.open_ok(gone);
  const std::string state = first.save_state();

  std::filesystem::remove(tree / "a/gone.txt");
  std::filesystem::remove_all(tree / "a/swapped");
  tree.symlink("a/swapped", (tree / "outside").string());  // a planted symlink where a directory was
  FuseSession second = make_session(tree);
  ASSERT_TRUE(second.resume(state).ok());
  Client after(second);
  const std::string getattr(sizeof(fuse_getattr_in), '\0');
  EXPECT_EQ(after.call(FUSE_GETATTR, kept, getattr).error, 0);
  EXPECT_EQ(after.call(FUSE_GETATTR, gone, getattr).error, ESTALE);
  EXPECT_EQ(after.read(gone, gone_fh, 0, 4096).error, EBADF);
  EXPECT_EQ(after.call(FUSE_GETATTR, swapped, getattr).error, ESTALE);
  EXPECT_EQ(after.lookup(swapped, "secret").error, ESTALE);
}

TEST(SessionState, GarbageIsRefusedAndLeavesTheSessionUninitialized) {
  HostTree tree;
  FuseSession s = make_session(tree);
  for (const char* bad : {"", "{", "[]", R"({"format":2,"minor":31,"nodes":[],"handles":[]})",
                          R"({"format":1,"minor":3,"nodes":[],"handles":[]})",
                          R"({"format":1,"minor":31,"nodes":[{"id":"2"}],"handles":[]})",
                          R"({"format":1,"minor":31,"nodes":[],"handles":[{"fh":1,"kind":"pipe","node":1}]})"}) {
    EXPECT_FALSE(s.resume(bad).ok()) << bad;
  }
  EXPECT_FALSE(s.initialized());
  // A node saved under a path that climbs out of the root is not opened.
  ASSERT_TRUE(s.resume(R"({"format":1,"minor":31,"nodes":[{"id":2,"root":0,"path":"../..","dev":0,"ino":0,)"
                       R"("lookups":1},{"id":3,"root":7,"path":".","dev":0,"ino":0,"lookups":1}],"handles":[]})")
                  .ok());
  EXPECT_EQ(s.node_count(), 0u);
}

}  // namespace
}  // namespace kiln::share
