#include "common/text.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(Trim, TakesAsciiWhiteSpaceOffBothEndsOnly) {
  EXPECT_EQ(trim("  Depends: a, b \t\r\n"), "Depends: a, b");
  EXPECT_EQ(trim("\v\fword\f\v"), "word");
  EXPECT_EQ(trim("inner  space"), "inner  space");
}

TEST(Trim, AllSpaceOrEmptyIsEmpty) {
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim(" \t\n\v\f\r"), "");
}

TEST(Trim, LeavesOtherBytesAlone) {
  EXPECT_EQ(trim(std::string_view("\0x\0", 3)), std::string_view("\0x\0", 3));
  EXPECT_EQ(trim("\xa0x\xa0"), "\xa0x\xa0");  // not ASCII white space
}

}  // namespace
}  // namespace kiln
