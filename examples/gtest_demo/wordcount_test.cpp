#include "wordcount.h"

#include <gtest/gtest.h>

#include <sstream>

TEST(CountWords, EmptyTextHasNoWords) { EXPECT_EQ(count_words(""), 0u); }

TEST(CountWords, SingleWord) { EXPECT_EQ(count_words("one"), 1u); }

TEST(CountWords, SurroundingSpaceIsIgnored) { EXPECT_EQ(count_words("  two words "), 2u); }

TEST(CountWords, TabsAndNewlinesSeparateWords) { EXPECT_EQ(count_words("tabs\tand\nnewlines"), 3u); }

TEST(CountWords, ReadsAStream) {
  std::istringstream in("a stream of five words");
  EXPECT_EQ(count_words(in), 5u);
}
