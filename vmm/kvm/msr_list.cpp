#include "vmm/kvm/msr_list.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace kiln::vmm::kvm {
namespace {

/// KVM refuses more than 255 MSRs per KVM_GET/SET_MSRS (MAX_IO_MSRS = 256, exclusive).
constexpr size_t kMsrsPerIoctl = 255;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using CPtr = std::unique_ptr<T, FreeDeleter>;

/// calloc'd header + `n` flexible-array entries (no declared type, zeroed).
template <class Header, class Entry>
CPtr<Header> alloc_fam(size_t n) {
  void* raw = std::calloc(1, sizeof(Header) + n * sizeof(Entry));
  if (!raw) throw std::bad_alloc();
  return CPtr<Header>(static_cast<Header*>(raw));
}

struct Range {
  uint32_t first, last;
  bool contains(uint32_t i) const { return i >= first && i <= last; }
};

// MSRs KVM lists that a snapshot must not carry: nested-virtualization controls and
// capabilities (CPUID hides VMX/SVM, nested state is not saved), Hyper-V (kiln's
// guests use KVM paravirt), and IA32_MCG_CTL (readable only with MCG_CAP.CTL_P,
// which kiln never sets up).
constexpr Range kDenied[] = {
    {0x17b, 0x17b},                    // IA32_MCG_CTL
    {0x480, 0x491},                    // IA32_VMX_*
    {0x40000000, 0x400001ff},          // Hyper-V
    {0xc0010114, 0xc0010114},          // AMD VM_CR
    {0xc0010117, 0xc0010117},          // AMD VM_HSAVE_PA
};

// MTRRs are vCPU state KVM keeps but does not list. Without them a restored vCPU
// would have MTRRs disabled: all of RAM uncacheable by the guest's reckoning.
constexpr uint32_t kMtrrs[] = {0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207,
                               0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,
                               0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c,
                               0x26d, 0x26e, 0x26f, kMsrMtrrDefType};

/// One KVM_GET_MSRS / KVM_SET_MSRS over at most kMsrsPerIoctl entries: how many
/// succeeded (KVM stops at the first MSR it refuses), or -1 with errno.
int msrs_ioctl(int vcpu_fd, unsigned long request, std::span<kvm_msr_entry> entries) {
  auto m = alloc_fam<kvm_msrs, kvm_msr_entry>(entries.size());
  m->nmsrs = static_cast<uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), m->entries);
  const int r = ioctl(vcpu_fd, request, m.get());
  if (r > 0) std::copy_n(m->entries, r, entries.begin());
  return r;
}

/// Run `request` over all of `entries`, dropping each entry KVM refuses.
Result<std::vector<kvm_msr_entry>> keep_accepted(int vcpu_fd, unsigned long request,
                                                 std::vector<kvm_msr_entry> entries,
                                                 const char* what) {
  std::vector<kvm_msr_entry> kept;
  size_t pos = 0;
  while (pos < entries.size()) {
    const size_t n = std::min(kMsrsPerIoctl, entries.size() - pos);
    const int r = msrs_ioctl(vcpu_fd, request, std::span(entries).subspan(pos, n));
    if (r < 0) return make_error("{} while probing MSRs failed: {}", what, std::strerror(errno));
    const auto ok = static_cast<size_t>(r);
    kept.insert(kept.end(), entries.begin() + static_cast<ptrdiff_t>(pos),
                entries.begin() + static_cast<ptrdiff_t>(pos + ok));
    pos += ok;
    if (ok < n) ++pos;  // entries[pos] was refused: leave it out
  }
  return kept;
}

}  // namespace

Result<std::vector<uint32_t>> kvm_msr_index_list(int kvm_fd) {
  kvm_msr_list probe{};
  // With nmsrs = 0 KVM answers E2BIG and the count it needs.
  if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
    return make_error("KVM_GET_MSR_INDEX_LIST failed: {}", std::strerror(errno));
  if (probe.nmsrs > kMaxSavedMsrs)
    return make_error("KVM lists {} MSRs, more than the {} kiln handles", probe.nmsrs, kMaxSavedMsrs);
  auto list = alloc_fam<kvm_msr_list, uint32_t>(probe.nmsrs);
  list->nmsrs = probe.nmsrs;
  if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list.get()) < 0)
    return make_error("KVM_GET_MSR_INDEX_LIST failed: {}", std::strerror(errno));
  return std::vector<uint32_t>(list->indices, list->indices + list->nmsrs);
}

std::vector<uint32_t> msr_save_candidates(std::span<const uint32_t> listed) {
  std::vector<uint32_t> out(listed.begin(), listed.end());
  out.insert(out.end(), std::begin(kMtrrs), std::end(kMtrrs));
  std::erase_if(out, [](uint32_t i) {
    return std::any_of(std::begin(kDenied), std::end(kDenied), [i](const Range& r) { return r.contains(i); });
  });
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<std::vector<uint32_t>> probe_msrs_to_save(int vcpu_fd, std::span<const uint32_t> candidates) {
  if (candidates.size() > kMaxSavedMsrs)
    return make_error("{} MSR candidates, more than the {} kiln handles", candidates.size(), kMaxSavedMsrs);
  std::vector<kvm_msr_entry> entries(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) entries[i].index = candidates[i];
  KILN_ASSIGN_OR_RETURN(auto readable, keep_accepted(vcpu_fd, KVM_GET_MSRS, std::move(entries), "KVM_GET_MSRS"));
  // Writing back what was just read changes nothing, and proves a restore can write it.
  KILN_ASSIGN_OR_RETURN(auto writable, keep_accepted(vcpu_fd, KVM_SET_MSRS, std::move(readable), "KVM_SET_MSRS"));
  std::vector<uint32_t> out;
  out.reserve(writable.size());
  for (const auto& e : writable) out.push_back(e.index);
  return out;
}

std::vector<kvm_msr_entry> boot_msrs() {
  auto msr = [](uint32_t index, uint64_t data) {
    kvm_msr_entry e{};
    e.index = index;
    e.data = data;
    return e;
  };
  return {
      msr(0x174, 0), msr(0x175, 0), msr(0x176, 0),  // SYSENTER_CS/ESP/EIP
      msr(0xc0000081, 0),                           // STAR
      msr(0xc0000082, 0),                           // LSTAR
      msr(0xc0000083, 0),                           // CSTAR
      msr(0xc0000084, 0),                           // SFMASK
      msr(0xc0000102, 0),                           // KERNEL_GS_BASE
      msr(kMsrIa32Tsc, 0),
      msr(kMsrIa32MiscEnable, 1),                   // bit 0: fast string operations
      msr(kMsrMtrrDefType, (1u << 11) | 6),         // MTRRs enabled, default type write-back
  };
}

Result<std::vector<kvm_msr_entry>> get_msrs(int vcpu_fd, std::span<const uint32_t> indices) {
  std::vector<kvm_msr_entry> out(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) out[i].index = indices[i];
  for (size_t pos = 0; pos < out.size(); pos += kMsrsPerIoctl) {
    const size_t n = std::min(kMsrsPerIoctl, out.size() - pos);
    const int r = msrs_ioctl(vcpu_fd, KVM_GET_MSRS, std::span(out).subspan(pos, n));
    if (r < 0) return make_error("KVM_GET_MSRS failed: {}", std::strerror(errno));
    if (static_cast<size_t>(r) < n)
      return make_error("KVM_GET_MSRS refused MSR {:#x}", out[pos + static_cast<size_t>(r)].index);
  }
  return out;
}

Result<void> set_msrs(int vcpu_fd, std::span<const kvm_msr_entry> entries) {
  std::vector<kvm_msr_entry> copy(entries.begin(), entries.end());
  for (size_t pos = 0; pos < copy.size(); pos += kMsrsPerIoctl) {
    const size_t n = std::min(kMsrsPerIoctl, copy.size() - pos);
    const int r = msrs_ioctl(vcpu_fd, KVM_SET_MSRS, std::span(copy).subspan(pos, n));
    if (r < 0) return make_error("KVM_SET_MSRS failed: {}", std::strerror(errno));
    if (static_cast<size_t>(r) < n) {
      const auto& bad = copy[pos + static_cast<size_t>(r)];
      return make_error("KVM_SET_MSRS refused MSR {:#x} = {:#x}", bad.index, bad.data);
    }
  }
  return {};
}

}  // namespace kiln::vmm::kvm
