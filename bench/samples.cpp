#include "bench/samples.h"

#include <algorithm>

namespace kiln::bench {

void Samples::add_all(const std::map<std::string, double>& values, const std::string& prefix) {
  for (const auto& [name, value] : values) add(prefix + name, value);
}

size_t Samples::count(const std::string& name) const {
  auto it = series_.find(name);
  return it == series_.end() ? 0 : it->second.size();
}

double Samples::median(const std::string& name) const {
  auto it = series_.find(name);
  if (it == series_.end() || it->second.empty()) return 0;
  std::vector<double> v = it->second;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace kiln::bench
