#include "grades.h"

std::string letter_grade(int score) {
  if (score < 0 || score > 100) {
    return "invalid";
  }
  if (score >= 90) {
    return "A";
  }
  if (score >= 80) {
    return "B";
  }
  if (score >= 70) {
    return "C";
  }
  if (score >= 60) {
    return "D";
  }
  return "F";
}

int mean_score(const std::vector<int>& scores) {
  if (scores.empty()) {
    return 0;
  }
  long sum = 0;
  for (int s : scores) sum += s;
  return static_cast<int>(sum / static_cast<long>(scores.size()));
}
