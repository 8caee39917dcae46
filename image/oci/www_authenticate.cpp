#include "image/oci/www_authenticate.h"

#include <cctype>

namespace kiln::image {

std::string AuthChallenge::param(std::string_view name) const {
  for (const auto& [key, value] : params) {
    if (key == name) return value;
  }
  return {};
}

namespace {

// RFC 7230 tchar.
bool is_tchar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool is_token68_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' || c == '~' ||
         c == '+' || c == '/';
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// A cursor over the header with the grammar's small pieces.
class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}
  bool done() const { return pos_ >= s_.size(); }
  char peek() const { return done() ? '\0' : s_[pos_]; }
  size_t pos() const { return pos_; }
  void seek(size_t pos) { pos_ = pos; }
  void skip_ws() {
    while (!done() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  /// Skip whitespace and commas (empty list elements are allowed by RFC 7230 #rule).
  void skip_separators() {
    while (!done() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == ',')) ++pos_;
  }
  std::string_view token() {
    size_t start = pos_;
    while (!done() && is_tchar(s_[pos_])) ++pos_;
    return s_.substr(start, pos_ - start);
  }
  /// token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
  std::string_view token68() {
    size_t start = pos_;
    while (!done() && is_token68_char(s_[pos_])) ++pos_;
    while (!done() && s_[pos_] == '=') ++pos_;
    return s_.substr(start, pos_ - start);
  }
  /// A quoted string starting at the current '"'; false if unterminated or malformed.
  bool quoted(std::string* out) {
    ++pos_;  // the opening quote
    while (!done()) {
      char c = s_[pos_++];
      if (c == '"') return true;
      if (c == '\\') {
        if (done()) return false;
        c = s_[pos_++];
      }
      if (c == '\r' || c == '\n' || c == '\0') return false;
      out->push_back(c);
    }
    return false;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

Error malformed(std::string_view header, size_t pos, std::string_view what) {
  return make_error("malformed WWW-Authenticate header from the registry ({} at byte {}): '{}'", what, pos,
                    header.substr(0, 200));
}

/// Parameters (or a token68) after a scheme, up to the next challenge or the end.
Result<void> parse_params(std::string_view header, Scanner& in, AuthChallenge& challenge) {
  while (true) {
    in.skip_separators();
    if (in.done()) return {};
    size_t start = in.pos();
    std::string_view name = in.token();
    if (name.empty()) {
      // Not a parameter name: a token68 is allowed only as the challenge's first item.
      if (challenge.params.empty() && challenge.token68.empty()) {
        std::string_view t = in.token68();
        if (t.empty()) return malformed(header, in.pos(), "unexpected character");
        challenge.token68 = std::string(t);
        continue;
      }
      return malformed(header, in.pos(), "unexpected character");
    }
    in.skip_ws();
    if (in.peek() != '=') {
      // `name` followed by something other than '=': the next challenge's scheme, unless it
      // is a token68 ending in '=' padding (e.g. "Negotiate abc==").
      in.seek(start);
      if (challenge.params.empty() && challenge.token68.empty()) {
        std::string_view t = in.token68();
        in.skip_ws();
        if (!t.empty() && (in.done() || in.peek() == ',')) {
          challenge.token68 = std::string(t);
          continue;
        }
        in.seek(start);
      }
      return {};
    }
    // "name=" could still be a token68 with padding ("Negotiate abc=") if nothing follows.
    in.seek(in.pos() + 1);
    in.skip_ws();
    std::string value;
    if (in.peek() == '"') {
      if (!in.quoted(&value)) return malformed(header, in.pos(), "unterminated quoted string");
    } else {
      std::string_view t = in.token();
      if (t.empty() && challenge.params.empty() && challenge.token68.empty() &&
          (in.done() || in.peek() == ',' || in.peek() == '=')) {
        in.seek(start);
        std::string_view t68 = in.token68();
        if (t68.empty()) return malformed(header, in.pos(), "unexpected character");
        challenge.token68 = std::string(t68);
        continue;
      }
      if (t.empty()) return malformed(header, in.pos(), "missing parameter value");
      value = std::string(t);
    }
    if (challenge.params.size() >= kMaxAuthParams) return malformed(header, in.pos(), "too many parameters");
    challenge.params.emplace_back(lower(name), std::move(value));
    in.skip_ws();
    if (!in.done() && in.peek() != ',') return malformed(header, in.pos(), "expected ',' after a parameter");
  }
}

}  // namespace

Result<std::vector<AuthChallenge>> parse_www_authenticate(std::string_view header) {
  if (header.size() > kMaxAuthHeaderBytes) {
    return make_error("WWW-Authenticate header from the registry is {} bytes (more than {}): refused", header.size(),
                      kMaxAuthHeaderBytes);
  }
  std::vector<AuthChallenge> challenges;
  Scanner in(header);
  while (true) {
    in.skip_separators();
    if (in.done()) break;
    std::string_view scheme = in.token();
    if (scheme.empty()) return malformed(header, in.pos(), "expected an authentication scheme");
    if (challenges.size() >= kMaxAuthChallenges) return malformed(header, in.pos(), "too many challenges");
    AuthChallenge challenge;
    challenge.scheme = lower(scheme);
    if (!in.done() && in.peek() != ' ' && in.peek() != '\t' && in.peek() != ',') {
      return malformed(header, in.pos(), "expected a space after the scheme");
    }
    KILN_TRY(parse_params(header, in, challenge));
    challenges.push_back(std::move(challenge));
  }
  if (challenges.empty()) return make_error("empty WWW-Authenticate header from the registry");
  return challenges;
}

}  // namespace kiln::image
