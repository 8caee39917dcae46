#include "vmm/accel.h"

#include "common/log.h"
#include "common/unique_fd.h"
#include "vmm/kvm/linux_kvm.h"
#include "vmm/per_boot_cache.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace kiln::vmm {
namespace {

// Per boot: a kernel update or a fixed nested setup may heal KVM, so never forever.
constexpr const char* kVerdictPrefix = "kvm-unusable-";
constexpr const char* kRanAGuestPrefix = "kvm-ran-a-guest-";
constexpr size_t kMaxReasonBytes = 4096;

}  // namespace

const char* accel_name(Accel accel) { return accel == Accel::kvm ? "kvm" : "tcg"; }

Result<void> probe_kvm() {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm) {
    int e = errno;
    if (e == ENOENT) return make_error("/dev/kvm does not exist (no hardware virtualisation, or kvm module not loaded)");
    if (e == EACCES || e == EPERM)
      return make_error("cannot open /dev/kvm: {} (add your user to the 'kvm' group)", std::strerror(e));
    return make_error("cannot open /dev/kvm: {}", std::strerror(e));
  }
  int api = ::ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION)
    return make_error("/dev/kvm reports API version {}, kiln needs {}", api, KVM_API_VERSION);
  UniqueFd vm(::ioctl(kvm.get(), KVM_CREATE_VM, 0));
  if (!vm) return make_error("KVM_CREATE_VM failed on /dev/kvm: {}", std::strerror(errno));
  return {};
}

Result<AccelChoice> choose_accel(std::string_view requested) {
  if (requested == "tcg") return AccelChoice{Accel::tcg, false, "requested --accel tcg"};
  if (requested == "kvm") {
    auto probe = probe_kvm();
    if (!probe) return make_error("--accel kvm was requested but KVM is unusable: {}; use --accel tcg or auto",
                                  probe.error().message);
    return AccelChoice{Accel::kvm, false, "requested --accel kvm"};
  }
  if (requested != "auto") return make_error("unknown accelerator '{}': use kvm, tcg or auto", requested);

  // The verdict is checked first: it is one stat(), and it is what a broken host needs.
  if (auto reason = kvm_unusable_reason())
    return AccelChoice{Accel::tcg, true, "KVM was found unusable earlier on this boot (" + *reason + ")"};
  if (kvm_ran_a_guest_this_boot()) return AccelChoice{Accel::kvm, true, "/dev/kvm ran a guest earlier on this boot"};
  auto probe = probe_kvm();
  if (!probe) return AccelChoice{Accel::tcg, true, probe.error().message};
  return AccelChoice{Accel::kvm, true, "/dev/kvm works"};
}

void mark_kvm_unusable(const std::string& reason) {
  std::string text = reason.substr(0, kMaxReasonBytes);
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  if (auto stored = write_per_boot(kVerdictPrefix, text + "\n"); !stored)
    log::info("warning: cannot remember that KVM is unusable ({}); the next run will try KVM again",
              stored.error().message);
}

bool kvm_marked_unusable() { return kvm_unusable_reason().has_value(); }

std::optional<std::string> kvm_unusable_reason() {
  auto text = read_per_boot(kVerdictPrefix, kMaxReasonBytes + 16);
  if (!text) return std::nullopt;
  std::string reason = *text;
  while (!reason.empty() && (reason.back() == '\n' || reason.back() == '\r')) reason.pop_back();
  return reason.empty() ? std::string("no reason recorded") : reason;
}

void mark_kvm_ran_a_guest() {
  if (auto stored = write_per_boot(kRanAGuestPrefix, "yes\n"); !stored)
    log::debug("cannot remember that KVM ran a guest ({}); the next run probes again", stored.error().message);
}

bool kvm_ran_a_guest_this_boot() { return read_per_boot(kRanAGuestPrefix, 16).has_value(); }

}  // namespace kiln::vmm
