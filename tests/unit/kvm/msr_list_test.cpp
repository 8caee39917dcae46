#include "vmm/kvm/msr_list.h"

#include "cpuid_test_table.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

namespace kiln::vmm::kvm {
namespace {

/// An fd that is not KVM: every KVM ioctl on it fails with ENOTTY.
struct NotKvm {
  int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ~NotKvm() { ::close(fd); }
};

bool contains(const std::vector<uint32_t>& v, uint32_t msr) { return std::find(v.begin(), v.end(), msr) != v.end(); }

TEST(MsrSaveCandidates, KeepsListedAddsMtrrsDropsDenied) {
  const auto listed = testing::amd_epyc_msr_index_list();
  const auto c = msr_save_candidates(listed);
  EXPECT_TRUE(std::is_sorted(c.begin(), c.end()));
  EXPECT_EQ(std::adjacent_find(c.begin(), c.end()), c.end());  // unique
  for (uint32_t m : {kMsrIa32Tsc, kMsrIa32TscDeadline, kMsrIa32MiscEnable, 0xc0000082u /*LSTAR*/,
                     0x4b564d01u /*kvmclock*/, 0x277u /*PAT*/})
    EXPECT_TRUE(contains(c, m)) << std::hex << m;
  for (uint32_t m : {kMsrMtrrDefType, 0x200u, 0x20fu, 0x250u, 0x26fu}) EXPECT_TRUE(contains(c, m)) << std::hex << m;
  EXPECT_FALSE(contains(c, 0x17b));         // IA32_MCG_CTL
  EXPECT_FALSE(contains(c, 0xc0010117));    // SVM host save area: nested virt
  EXPECT_FALSE(contains(c, 0xfe));          // MTRRcap is read-only: not added
}

TEST(MsrSaveCandidates, DropsNestedAndHyperV) {
  const std::vector<uint32_t> listed = {0x480, 0x48b, 0x491, 0x40000000, 0x40000105, 0xc0010114, 0x10};
  EXPECT_EQ(msr_save_candidates(listed).front(), 0x10u);
  for (uint32_t m : msr_save_candidates(listed)) {
    EXPECT_FALSE(m >= 0x480 && m <= 0x491);
    EXPECT_FALSE(m >= 0x40000000 && m <= 0x400001ff);
    EXPECT_NE(m, 0xc0010114u);
  }
}

TEST(BootMsrs, WhatLinuxExpectsFromFirmware) {
  const auto msrs = boot_msrs();
  auto value = [&](uint32_t index) -> std::optional<uint64_t> {
    for (const auto& e : msrs)
      if (e.index == index) return e.data;
    return std::nullopt;
  };
  EXPECT_EQ(value(kMsrIa32MiscEnable), 1u);            // fast strings
  EXPECT_EQ(value(kMsrMtrrDefType), 0x806u);           // MTRRs on (bit 11), write-back (6) default
  EXPECT_EQ(value(kMsrIa32Tsc), 0u);
  for (uint32_t m : {0x174u, 0x175u, 0x176u, 0xc0000081u, 0xc0000082u, 0xc0000083u, 0xc0000084u, 0xc0000102u})
    EXPECT_EQ(value(m), 0u) << std::hex << m;
}

TEST(MsrIoctls, FailCleanlyOnANonKvmFd) {
  // Not a vCPU: every call must fail with an error, not crash or return garbage.
  const std::vector<uint32_t> idx = {kMsrIa32Tsc};
  auto got = get_msrs(NotKvm().fd, idx);
  EXPECT_FALSE(got.ok());
  EXPECT_FALSE(set_msrs(NotKvm().fd, boot_msrs()).ok());
  EXPECT_FALSE(probe_msrs_to_save(NotKvm().fd, idx).ok());
  EXPECT_FALSE(kvm_msr_index_list(NotKvm().fd).ok());
}

TEST(MsrIoctls, EmptyListsNeedNoIoctl) {
  auto got = get_msrs(-1, {});
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
  EXPECT_TRUE(set_msrs(-1, {}).ok());
}

}  // namespace
}  // namespace kiln::vmm::kvm
