#include "runner/guest_text.h"

#include <fmt/format.h>

#include <cstdint>

namespace kiln::runner {
namespace {

constexpr size_t kConsoleTail = 3000;
// How far past the cut a line start is looked for, so the tail does not begin mid-line.
constexpr size_t kLineSearch = 200;

bool continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the valid UTF-8 sequence at the start of `s` (2-4) and its code point,
// or 0 when it is not one: overlong forms, surrogates and values past U+10FFFF are not.
size_t utf8_sequence(std::string_view s, uint32_t* cp) {
  auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    *cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    *cp = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // UTF-16 surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    *cp = c & 0x07;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < len || b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 1; i < len; ++i) {
    if (!continuation(b(i))) return 0;
    *cp = (*cp << 6) | (b(i) & 0x3F);
  }
  return len;
}

// Code points that are valid but steer the terminal: C1 controls, bidi overrides and isolates.
bool unsafe_code_point(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

}  // namespace

std::string escape_guest_text(std::string_view text, bool multiline) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (multiline && (c == '\n' || c == '\t')) {
        out += static_cast<char>(c);
      } else if (multiline && c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
        // CR LF is how the serial console ends lines: show it as the line end it is.
      } else if (c == '\\') {
        out += "\\\\";
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20 || c == 0x7F) {
        out += fmt::format("\\x{:02x}", c);
      } else {
        out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t len = utf8_sequence(text.substr(i), &cp);
    if (len == 0) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else if (unsafe_code_point(cp)) {
      out += fmt::format("\\u{{{:04x}}}", cp);
      i += len;
    } else {
      out.append(text.substr(i, len));
      i += len;
    }
  }
  return out;
}

std::string console_tail_of(std::string_view console) {
  if (console.empty()) return "(the guest printed nothing)";
  if (console.size() <= kConsoleTail) return escape_guest_text(console, true);
  std::string_view tail = console.substr(console.size() - kConsoleTail);
  const size_t line = tail.substr(0, kLineSearch).find('\n');
  if (line != std::string_view::npos) tail.remove_prefix(line + 1);
  return "...\n" + escape_guest_text(tail, true);
}

std::string guest_console_tail(vmm::Vm& vm) { return console_tail_of(vm.console_output()); }

std::string with_console_tail(std::string_view reason, vmm::Vm& vm) {
  return fmt::format("{}\n--- guest console (tail) ---\n{}", reason, guest_console_tail(vm));
}

}  // namespace kiln::runner
