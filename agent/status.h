// Errors are values in the agent too: a request handler returns a Status whose
// message becomes the ERROR reply the host shows to the user.
#pragma once

#include <string>
#include <utility>

namespace kiln::agent {

class [[nodiscard]] Status {
 public:
  static Status ok() { return Status(); }
  /// `message` says what failed, on what (it reaches the user verbatim).
  static Status fail(std::string message) { return Status(std::move(message)); }

  bool is_ok() const { return message_.empty(); }
  const std::string& message() const { return message_; }

 private:
  Status() = default;
  explicit Status(std::string m) : message_(m.empty() ? std::string("unknown error") : std::move(m)) {}
  std::string message_;
};

}  // namespace kiln::agent
