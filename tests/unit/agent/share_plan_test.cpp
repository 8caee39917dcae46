// The share's mount plan: which roots the agent accepts and the exact mount options.
#include "agent/share_plan.h"

#include <gtest/gtest.h>

using namespace kiln::agent;

namespace {

std::string failure(const std::vector<std::string>& roots) {
  Status s = check_share_roots(roots);
  return s.is_ok() ? std::string("(accepted)") : s.message();
}

TEST(SharePlan, EachRootHasItsOwnDirectories) {
  RootDirs d = root_dirs(3);
  EXPECT_EQ(d.shared, "/run/kiln/share/3");
  EXPECT_EQ(d.lower, "/run/kiln/lower/3");
  EXPECT_EQ(d.upper, "/run/kiln/upper/3/u");
  EXPECT_EQ(d.work, "/run/kiln/upper/3/w");
}

TEST(SharePlan, FuseMountIsAReadOnlyDirectoryRootForEveryUser) {
  EXPECT_EQ(fuse_mount_data(7), "fd=7,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions");
}

TEST(SharePlan, PayloadDirectoryIsTheTopLowerLayerAboveTheSharedTree) {
  RootDirs d = root_dirs(0);
  EXPECT_EQ(overlay_mount_data(d, true),
            "lowerdir=/run/kiln/lower/0:/run/kiln/share/0,upperdir=/run/kiln/upper/0/u,workdir=/run/kiln/upper/0/w");
  EXPECT_EQ(overlay_mount_data(d, false),
            "lowerdir=/run/kiln/share/0,upperdir=/run/kiln/upper/0/u,workdir=/run/kiln/upper/0/w");
}

TEST(SharePlan, SeparateTreesAreAccepted) {
  EXPECT_TRUE(check_share_roots({"/w/proj", "/w/proj-build", "/w/projects", "/run/user/1000/src"}).is_ok());
  EXPECT_TRUE(check_share_roots({"/tmp/ci/build"}).is_ok());
}

TEST(SharePlan, NestedOrRepeatedRootsAreRefusedNamingBoth) {
  EXPECT_EQ(failure({"/w/proj", "/w/proj/build"}),
            "share root /w/proj/build lies inside share root /w/proj: kiln shares only the outer one");
  EXPECT_EQ(failure({"/w/proj/build", "/w/proj"}),
            "share root /w/proj/build lies inside share root /w/proj: kiln shares only the outer one");
  EXPECT_EQ(failure({"/a", "/w/proj", "/w/proj"}), "share root /w/proj is listed twice");
}

TEST(SharePlan, RootsThatWouldCoverTheGuestOrTheShareMachineryAreRefused) {
  EXPECT_NE(failure({"/"}).find("cannot share onto /"), std::string::npos) << failure({"/"});
  for (const char* root : {"/run", "/run/kiln", "/run/kiln/share", "/run/kiln/upper/0/u"})
    EXPECT_NE(failure({root}).find("the agent keeps the share's own mounts in /run/kiln"), std::string::npos)
        << root << ": " << failure({root});
  EXPECT_NE(failure({"/w/proj/"}).find("ends in '/'"), std::string::npos);
  EXPECT_EQ(failure({}), "a share request with no roots");
}

}  // namespace
