#include "image/rootfs/member_path.h"

#include <gtest/gtest.h>

namespace kiln::rootfs {
namespace {

std::string norm(std::string_view raw) {
  auto r = normalize_member_path(raw);
  return r ? *r : "ERROR: " + r.error().message;
}

TEST(MemberPath, NormalisesToOneForm) {
  EXPECT_EQ(norm("etc/passwd"), "etc/passwd");
  EXPECT_EQ(norm("./etc/passwd"), "etc/passwd");
  EXPECT_EQ(norm("/etc/passwd"), "etc/passwd");
  EXPECT_EQ(norm("//./etc//./passwd/"), "etc/passwd");
  EXPECT_EQ(norm("./"), "");
  EXPECT_EQ(norm("/"), "");
  EXPECT_EQ(norm("."), "");
  EXPECT_EQ(norm("a/..b/c.."), "a/..b/c..");  // ".." only as a whole component
}

TEST(MemberPath, RefusesDotDotLongAndEmpty) {
  EXPECT_NE(norm("../evil").find("'..'"), std::string::npos);
  EXPECT_NE(norm("a/../../evil").find("'..'"), std::string::npos);
  EXPECT_NE(norm("/..").find("'..'"), std::string::npos);
  EXPECT_NE(norm("a/..").find("'..'"), std::string::npos);  // even when it stays inside: refused, not resolved
  EXPECT_NE(norm("").find("empty"), std::string::npos);
  EXPECT_NE(norm(std::string(256, 'n')).find("255"), std::string::npos);
  EXPECT_EQ(norm(std::string(255, 'n')), std::string(255, 'n'));
  EXPECT_NE(norm(std::string(kMaxPathBytes + 1, 'a')).find("limit"), std::string::npos);
}

TEST(MemberPath, ParentOf) {
  EXPECT_EQ(parent_of("a/b/c"), "a/b");
  EXPECT_EQ(parent_of("a"), "");
  EXPECT_EQ(parent_of(""), "");
}

TEST(MemberPath, ClassifiesWhiteouts) {
  auto plain = classify_whiteout("etc/passwd");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->kind, Whiteout::Kind::none);
  auto removal = classify_whiteout("etc/.wh.passwd");
  ASSERT_TRUE(removal.ok());
  EXPECT_EQ(removal->kind, Whiteout::Kind::remove);
  EXPECT_EQ(removal->target, "etc/passwd");
  auto top = classify_whiteout(".wh.tmp");
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(top->target, "tmp");
  auto opaque = classify_whiteout("var/cache/.wh..wh..opq");
  ASSERT_TRUE(opaque.ok());
  EXPECT_EQ(opaque->kind, Whiteout::Kind::opaque);
  EXPECT_EQ(opaque->target, "var/cache");
  auto root_opaque = classify_whiteout(".wh..wh..opq");
  ASSERT_TRUE(root_opaque.ok());
  EXPECT_EQ(root_opaque->target, "");
  auto aufs = classify_whiteout(".wh..wh.plnk");
  ASSERT_TRUE(aufs.ok());
  EXPECT_EQ(aufs->kind, Whiteout::Kind::ignore);
  EXPECT_FALSE(classify_whiteout("a/.wh.").ok());
  EXPECT_FALSE(classify_whiteout("a/.wh...").ok());
  EXPECT_FALSE(classify_whiteout("a/.wh..").ok());
  auto not_whiteout = classify_whiteout("a/x.wh.y");
  ASSERT_TRUE(not_whiteout.ok());
  EXPECT_EQ(not_whiteout->kind, Whiteout::Kind::none);
}

}  // namespace
}  // namespace kiln::rootfs
