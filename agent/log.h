// Diagnostics of the guest agent. PID 1's stdio is /dev/console, i.e. the
// serial log the host keeps (shown with `kiln run -v`), so every line goes
// there, prefixed so it stands out among kernel messages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace kiln::agent {

namespace detail {
inline void append(std::string& out, std::string_view s) { out.append(s); }
template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, char> && !std::is_same_v<T, bool>)
inline void append(std::string& out, T v) {
  out.append(std::to_string(v));
}
}  // namespace detail

/// Concatenates strings and integers (the agent has no fmt: it links statically, std only).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  (detail::append(out, parts), ...);
  return out;
}

/// Writes "kiln-agent: <msg>\n" to stderr in one write, so lines never interleave.
void log_line(std::string_view msg);

template <typename... Parts>
void log(const Parts&... parts) {
  log_line(cat(parts...));
}

/// strerror(err) as a std::string.
std::string errno_text(int err);

/// "<what>: <strerror(errno)>" for the current errno.
std::string sys_error(std::string_view what);

}  // namespace kiln::agent
