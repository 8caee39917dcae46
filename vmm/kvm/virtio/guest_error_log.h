// Rate-limited logging of guest misbehaviour (broken descriptor chains, bad register
// writes). A hostile or buggy guest can trigger these at vCPU speed, so an unbounded
// log would be a denial of service on the host's stderr.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <string>

namespace kiln::vmm::kvm {

/// One per device or queue. Not thread-safe: call it under the device's mutex.
class GuestErrorLog {
 public:
  /// `who` prefixes every line ("virtio-console queue 1").
  explicit GuestErrorLog(std::string who) : who_(std::move(who)) {}

  template <typename... Args>
  void report(fmt::format_string<Args...> f, Args&&... args) {
    ++total_;
    if (!admit()) return;
    emit(fmt::format(f, std::forward<Args>(args)...));
  }

  /// How many problems were reported (logged or not): tests and the fuzzer check it.
  uint64_t total() const { return total_; }

 private:
  bool admit();
  void emit(const std::string& what);

  static constexpr int kPerWindow = 5;
  static constexpr std::chrono::seconds kWindow{1};
  std::string who_;
  std::chrono::steady_clock::time_point window_start_{};
  int in_window_ = 0;
  uint64_t suppressed_ = 0;
  uint64_t total_ = 0;
};

}  // namespace kiln::vmm::kvm
