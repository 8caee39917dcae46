// The outcome of one step of a FUSE request: a value, or the errno the guest gets.
// FUSE replies carry nothing but -errno, so the handler's steps return this instead
// of kiln::Result, whose messages are written for a user.
#pragma once

#include <utility>
#include <variant>

namespace kiln::share {

/// An errno for the guest (ENOENT, EROFS, ...), always > 0.
struct Errno {
  int value;
};

template <typename T>
class [[nodiscard]] ErrnoOr {
 public:
  ErrnoOr(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  ErrnoOr(Errno error) : v_(error) {}         // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  T& operator*() & { return value(); }
  int error() const { return std::get<1>(v_).value; }

 private:
  std::variant<T, Errno> v_;
};

}  // namespace kiln::share
