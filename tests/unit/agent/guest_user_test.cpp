#include "agent/guest_user.h"
#include "agent/image_root.h"

#include <gtest/gtest.h>

namespace kiln::agent {
namespace {

constexpr const char* kPasswd =
    "root:x:0:0:root:/root:/bin/bash\n"
    "# a comment\n"
    "postgres:x:104:111:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n"
    "broken:x:notanumber:1::/:/bin/sh\n"
    "short:x:5\n";
constexpr const char* kGroup =
    "root:x:0:\n"
    "ssl-cert:x:110:postgres,other\n"
    "postgres:x:111:\n"
    "audio:x:29:someone\n";

TEST(GuestUser, NameGivesUidGidHomeAndSupplementaryGroups) {
  GuestUser u;
  ASSERT_EQ(resolve_guest_user("postgres", kPasswd, kGroup, u), "");
  EXPECT_EQ(u.uid, 104u);
  EXPECT_EQ(u.gid, 111u);
  EXPECT_EQ(u.home, "/var/lib/postgresql");
  EXPECT_EQ(u.groups, (std::vector<gid_t>{111, 110}));
}

TEST(GuestUser, NumericUidFindsTheEntryOrRunsWithoutOne) {
  GuestUser u;
  ASSERT_EQ(resolve_guest_user("104", kPasswd, kGroup, u), "");
  EXPECT_EQ(u.name, "postgres");
  ASSERT_EQ(resolve_guest_user("4242", kPasswd, kGroup, u), "");
  EXPECT_EQ(u.uid, 4242u);
  EXPECT_EQ(u.gid, 0u);
  EXPECT_EQ(u.home, "/");
}

TEST(GuestUser, ExplicitGroupByNameOrNumberReplacesTheUsersGroups) {
  GuestUser u;
  ASSERT_EQ(resolve_guest_user("postgres:ssl-cert", kPasswd, kGroup, u), "");
  EXPECT_EQ(u.gid, 110u);
  EXPECT_EQ(u.groups, (std::vector<gid_t>{110}));
  ASSERT_EQ(resolve_guest_user("1000:1000", kPasswd, kGroup, u), "");
  EXPECT_EQ(u.uid, 1000u);
  EXPECT_EQ(u.gid, 1000u);
}

TEST(GuestUser, UnknownNamesAndBadSyntaxAreErrors) {
  GuestUser u;
  EXPECT_NE(resolve_guest_user("nobody-here", kPasswd, kGroup, u), "");
  EXPECT_NE(resolve_guest_user("postgres:nogroup-here", kPasswd, kGroup, u), "");
  EXPECT_NE(resolve_guest_user(":0", kPasswd, kGroup, u), "");
  EXPECT_NE(resolve_guest_user("root:", kPasswd, kGroup, u), "");
  EXPECT_NE(resolve_guest_user("broken", kPasswd, kGroup, u), "");  // its uid field is not a number
  EXPECT_NE(resolve_guest_user("short", kPasswd, kGroup, u), "");
  EXPECT_NE(resolve_guest_user("4294967295", kPasswd, kGroup, u), "");  // (uid_t)-1 means "no change"
}

TEST(ImageRoot, DiskComesFromTheCommandLineAsAPlainDeviceName) {
  EXPECT_EQ(image_disk_from_cmdline("console=ttyS0 kiln.image=vda tsc=reliable"), "vda");
  EXPECT_EQ(image_disk_from_cmdline("console=ttyS0 kiln.image=vdb"), "vdb");
  EXPECT_EQ(image_disk_from_cmdline("console=ttyS0 rdinit=/init"), "");
  EXPECT_EQ(image_disk_from_cmdline("kiln.image=../sda"), "");
  EXPECT_EQ(image_disk_from_cmdline("kiln.image="), "");
  EXPECT_EQ(image_disk_from_cmdline("xkiln.image=vda"), "");
}

}  // namespace
}  // namespace kiln::agent
