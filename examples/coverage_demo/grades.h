#pragma once
#include <string>
#include <vector>

/// The letter grade for a score out of 100; "invalid" outside 0-100.
std::string letter_grade(int score);
/// The mean of `scores`, rounded down; 0 for none.
int mean_score(const std::vector<int>& scores);
