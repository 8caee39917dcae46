// Result<T>: the one error type used at every layer boundary in kiln.
#pragma once

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace kiln {

/// Why an operation stopped, where a caller must react differently (exit codes,
/// healing): `corrupt` is a snapshot found damaged or not loadable (rebaking heals it);
/// a resource limit or a dead process is `general`, and rebaking would not help.
enum class ErrorKind { general, timeout, interrupted, not_executable, not_found, corrupt };

/// A failure a user can act on: what failed, on what, and what to do.
struct Error {
  std::string message;
  ErrorKind kind = ErrorKind::general;
};

/// Build an Error with fmt-style formatting.
template <typename... Args>
[[nodiscard]] Error make_error(fmt::format_string<Args...> f, Args&&... args) {
  return Error{fmt::format(f, std::forward<Args>(args)...)};
}

/// Either a value or an Error. Cheap to move; check with `ok()` or `if (r)`.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}        // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(v_); }
  Error&& take_error() { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return error_; }
  Error&& take_error() { return std::move(error_); }

 private:
  Error error_;
  bool failed_ = false;
};

/// Prefix an error message with context ("baking snapshot: ...").
/// "<what> failed: <strerror(errno)>": the error of a system call that just failed.
[[nodiscard]] inline Error errno_error(std::string_view what) {
  const int err = errno;
  return make_error("{} failed: {}", what, std::strerror(err));
}

inline Error with_context(const std::string& context, const Error& e) {
  return Error{context + ": " + e.message, e.kind};
}

}  // namespace kiln

/// Propagate an error from a Result<void> expression.
#define KILN_TRY(expr)                              \
  do {                                              \
    auto kiln_try_result_ = (expr);                 \
    if (!kiln_try_result_) return kiln_try_result_.take_error(); \
  } while (0)

#define KILN_CONCAT_INNER_(a, b) a##b
#define KILN_CONCAT_(a, b) KILN_CONCAT_INNER_(a, b)

/// `KILN_ASSIGN_OR_RETURN(auto x, make_x());` — declare x from a Result or return its error.
#define KILN_ASSIGN_OR_RETURN(decl, expr) \
  KILN_ASSIGN_OR_RETURN_IMPL_(KILN_CONCAT_(kiln_result_, __LINE__), decl, expr)
#define KILN_ASSIGN_OR_RETURN_IMPL_(tmp, decl, expr) \
  auto tmp = (expr);                                  \
  if (!tmp) return tmp.take_error();                  \
  decl = std::move(tmp).value()
