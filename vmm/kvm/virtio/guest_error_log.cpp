#include "vmm/kvm/virtio/guest_error_log.h"

#include "common/log.h"

namespace kiln::vmm::kvm {

bool GuestErrorLog::admit() {
  const auto now = std::chrono::steady_clock::now();
  if (now - window_start_ >= kWindow) {
    window_start_ = now;
    in_window_ = 0;
  }
  if (in_window_ >= kPerWindow) {
    ++suppressed_;
    return false;
  }
  ++in_window_;
  return true;
}

void GuestErrorLog::emit(const std::string& what) {
  // Guest errors are the guest's problem, not the user's: shown with -v only.
  if (suppressed_ > 0) {
    kiln::log::verbose("{}: guest error: {} ({} similar messages suppressed)", who_, what, suppressed_);
    suppressed_ = 0;
  } else {
    kiln::log::verbose("{}: guest error: {}", who_, what);
  }
}

}  // namespace kiln::vmm::kvm
