// Reads a data file declared with FILES: it is in the guest at its host path.
#include "wordcount.h"

#include <gtest/gtest.h>

#include <fstream>

TEST(DataFile, IsPlacedInTheGuest) { EXPECT_TRUE(std::ifstream(DATA_FILE).good()) << DATA_FILE; }

TEST(DataFile, HasNineWords) {
  std::ifstream in(DATA_FILE);
  ASSERT_TRUE(in.good()) << DATA_FILE;
  EXPECT_EQ(count_words(in), 9u);
}
