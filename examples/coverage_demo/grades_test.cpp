// Covers some of grades.cpp on purpose: letter C and D stay uncovered, so a report
// that counts wrongly in either direction shows.
#include "grades.h"

#include <gtest/gtest.h>

TEST(Grades, TopAndBottom) {
  EXPECT_EQ(letter_grade(95), "A");
  EXPECT_EQ(letter_grade(12), "F");
}

TEST(Grades, OutOfRange) { EXPECT_EQ(letter_grade(101), "invalid"); }

TEST(Grades, Mean) {
  EXPECT_EQ(mean_score({80, 90, 100}), 90);
  EXPECT_EQ(letter_grade(mean_score({80, 85})), "B");
}
