// The WWW-Authenticate header of a registry's 401 (RFC 7235 challenges): which scheme
// the registry wants (Bearer: fetch a token from `realm`; Basic: send credentials) and
// its parameters. The header comes from the network: the parser is bounded and total.
#pragma once

#include "common/result.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::image {

/// One challenge: `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`.
struct AuthChallenge {
  std::string scheme;  ///< lowercased ("bearer", "basic")
  std::vector<std::pair<std::string, std::string>> params;  ///< names lowercased, values unquoted
  std::string token68;  ///< a bare token68 instead of params (rare; kept for completeness)
  /// The value of parameter `name` (lowercase), "" if absent.
  std::string param(std::string_view name) const;
};

/// Limits on what the parser accepts (a longer header or more items is an error).
inline constexpr size_t kMaxAuthHeaderBytes = 16 * 1024;
inline constexpr size_t kMaxAuthChallenges = 16;
inline constexpr size_t kMaxAuthParams = 32;

/// Parse a WWW-Authenticate value: one or more challenges separated by commas, each
/// `scheme [token68 | name=value, ...]`, values tokens or quoted strings with `\`
/// escapes. Several headers may be joined with ", ". Errors say what is malformed.
Result<std::vector<AuthChallenge>> parse_www_authenticate(std::string_view header);

}  // namespace kiln::image
