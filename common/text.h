// Small text helpers shared across layers.
#pragma once

#include <string_view>

namespace kiln {

/// `s` without leading and trailing ASCII white space (space, \t, \n, \v, \f, \r).
inline std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

}  // namespace kiln
