#include "common/fs.h"

#include <gtest/gtest.h>

namespace kiln::fs {
namespace {

TEST(IsWithin, ADirectoryAndWhatIsBelowIt) {
  EXPECT_TRUE(is_within("/w/proj", "/w/proj"));
  EXPECT_TRUE(is_within("/w/proj/build/t", "/w/proj"));
  EXPECT_TRUE(is_within("/w/proj/build/../data", "/w/proj/"));
}

TEST(IsWithin, NotASiblingOrAParent) {
  EXPECT_FALSE(is_within("/w/project", "/w/proj"));
  EXPECT_FALSE(is_within("/w", "/w/proj"));
  EXPECT_FALSE(is_within("/w/proj/../other", "/w/proj"));
}

}  // namespace
}  // namespace kiln::fs
