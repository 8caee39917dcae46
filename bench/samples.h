// Named series of measurements from one bench run, and their medians: what the
// summaries and ratios at the end of a bench are printed from.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace kiln::bench {

class Samples {
 public:
  void add(const std::string& name, double value) { series_[name].push_back(value); }
  /// Every (name, value) of `values`, each name prefixed with `prefix`.
  void add_all(const std::map<std::string, double>& values, const std::string& prefix = "");
  bool has(const std::string& name) const { return count(name) > 0; }
  size_t count(const std::string& name) const;
  /// Median of the series; 0 when it is empty.
  double median(const std::string& name) const;
  /// The single value of a one-shot measurement (its median when there are more).
  double value(const std::string& name) const { return median(name); }

 private:
  std::map<std::string, std::vector<double>> series_;
};

/// a / b, or 0 when b is 0 (a measurement that did not run).
inline double ratio(double a, double b) { return b > 0 ? a / b : 0; }

}  // namespace kiln::bench
