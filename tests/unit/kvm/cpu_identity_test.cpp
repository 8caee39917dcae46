#include "vmm/kvm/cpu_identity.h"

#include "cpuid_test_table.h"
#include "vmm/kvm/state_stream.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

namespace kiln::vmm::kvm {
namespace {

KvmCaps caps() {
  KvmCaps c;
  c.api_version = KVM_API_VERSION;
  c.xsave_size = 4096;
  c.xsave2 = true;
  c.sregs2 = true;
  return c;
}

CpuIdentity host() {
  return make_cpu_identity(testing::amd_epyc_supported_cpuid(), testing::amd_epyc_msr_index_list(), caps());
}

TEST(CpuIdentity, DecodesVendorFamilyModelStepping) {
  const CpuIdentity id = host();
  EXPECT_EQ(id.vendor, "AuthenticAMD");
  EXPECT_EQ(id.family, 0x19u);  // 0xf + extended family 0xa
  EXPECT_EQ(id.model, 0x11u);   // extended model 1, model 1
  EXPECT_EQ(id.stepping, 1u);
  EXPECT_EQ(id.xsave_size, 4096u);
  EXPECT_EQ(id.api_version, 12);
  EXPECT_EQ(id.cpuid_digest.size(), 16u);
  EXPECT_EQ(id.msr_digest.size(), 16u);
}

TEST(CpuIdentity, StringIsShortAndFileNameSafe) {
  const std::string s = host().to_string();
  EXPECT_LT(s.size(), 64u) << s;
  EXPECT_EQ(s.rfind("AuthenticAMD-25.17.1-c", 0), 0u) << s;
  EXPECT_TRUE(std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.'; })) << s;
  EXPECT_EQ(s, host().to_string());  // stable
}

TEST(CpuIdentity, IgnoresWhichHostCpuAnsweredTheIoctl) {
  auto t = testing::amd_epyc_supported_cpuid();
  find_cpuid(t, 1)->ebx = (find_cpuid(t, 1)->ebx & 0x00ffffff) | (7u << 24);  // APIC id 7, not 1
  find_cpuid(t, 0xb, 0)->edx = 7;
  EXPECT_EQ(make_cpu_identity(t, testing::amd_epyc_msr_index_list(), caps()), host());
}

TEST(CpuIdentity, ChangesWithAnyGuestVisibleFeature) {
  auto t = testing::amd_epyc_supported_cpuid();
  find_cpuid(t, 7, 0)->ebx ^= 1u << 5;  // AVX2
  const CpuIdentity other = make_cpu_identity(t, testing::amd_epyc_msr_index_list(), caps());
  EXPECT_NE(other.cpuid_digest, host().cpuid_digest);
  EXPECT_NE(other.to_string(), host().to_string());
}

TEST(CpuIdentity, MsrListOrderDoesNotMatterContentDoes) {
  auto msrs = testing::amd_epyc_msr_index_list();
  std::reverse(msrs.begin(), msrs.end());
  EXPECT_EQ(make_cpu_identity(testing::amd_epyc_supported_cpuid(), msrs, caps()), host());
  msrs.push_back(0x48);  // SPEC_CTRL appears after a kernel upgrade
  EXPECT_NE(make_cpu_identity(testing::amd_epyc_supported_cpuid(), msrs, caps()).msr_digest, host().msr_digest);
}

TEST(CpuIdentity, ChangesWithXsaveSizeAndKernelCaps) {
  KvmCaps c = caps();
  c.xsave_size = 11008;
  EXPECT_NE(make_cpu_identity(testing::amd_epyc_supported_cpuid(), testing::amd_epyc_msr_index_list(), c), host());
  c = caps();
  c.sregs2 = false;
  EXPECT_NE(make_cpu_identity(testing::amd_epyc_supported_cpuid(), testing::amd_epyc_msr_index_list(), c), host());
}

// QEMU's -cpu host: the guest sees KVM's table as it is, not kiln's guest_cpuid().
CpuIdentity passthrough(const CpuidTable& t) {
  return make_passthrough_cpu_identity(t, testing::amd_epyc_msr_index_list(), caps());
}

TEST(PassthroughCpuIdentity, SameHostFieldsOtherCpuidDigest) {
  const CpuIdentity id = passthrough(testing::amd_epyc_supported_cpuid());
  const CpuIdentity kiln = host();
  EXPECT_EQ(id.vendor, kiln.vendor);
  EXPECT_EQ(std::tie(id.family, id.model, id.stepping), std::tie(kiln.family, kiln.model, kiln.stepping));
  EXPECT_EQ(id.msr_digest, kiln.msr_digest);
  EXPECT_EQ(id.cpuid_digest.size(), 16u);
  EXPECT_NE(id.cpuid_digest, kiln.cpuid_digest) << "hashes KVM's table, not kiln's guest CPUID";
  EXPECT_EQ(id.to_string(), passthrough(testing::amd_epyc_supported_cpuid()).to_string());  // stable
}

TEST(PassthroughCpuIdentity, IgnoresWhichHostCpuAnsweredTheIoctl) {
  auto t = testing::amd_epyc_supported_cpuid();
  find_cpuid(t, 1)->ebx = (find_cpuid(t, 1)->ebx & 0x00ffffff) | (7u << 24);  // APIC id 7, not 1
  find_cpuid(t, 0xb, 0)->edx = 7;
  if (auto* e = find_cpuid(t, 0x8000001e)) e->eax = 7, e->ebx = 3, e->ecx = 1;
  EXPECT_EQ(passthrough(t), passthrough(testing::amd_epyc_supported_cpuid()));
}

TEST(PassthroughCpuIdentity, ChangesWithFeaturesKilnWouldHide) {
  // Nested virtualization on one host and not on another: kiln's own guests never see
  // SVM, a -cpu host guest does.
  auto t = testing::amd_epyc_supported_cpuid();
  find_cpuid(t, 0x80000001)->ecx ^= 1u << 2;  // SVM
  EXPECT_EQ(make_cpu_identity(t, testing::amd_epyc_msr_index_list(), caps()), host());
  EXPECT_NE(passthrough(t).to_string(), passthrough(testing::amd_epyc_supported_cpuid()).to_string());
  auto avx2 = testing::amd_epyc_supported_cpuid();
  find_cpuid(avx2, 7, 0)->ebx ^= 1u << 5;
  EXPECT_NE(passthrough(avx2).to_string(), passthrough(testing::amd_epyc_supported_cpuid()).to_string());
}

TEST(MetaSection, SameHostPasses) {
  StateWriter w;
  save_meta(w, host());
  const std::string file = w.finish();
  auto reader = StateReader::parse(file);
  ASSERT_TRUE(reader.ok());
  auto r = check_meta(*reader, host());
  EXPECT_TRUE(r.ok()) << r.error().message;
}

TEST(MetaSection, AnotherCpuIsAClearRebakeError) {
  auto t = testing::amd_epyc_supported_cpuid();
  find_cpuid(t, 1)->eax = 0x000806f8;  // a different model
  const CpuIdentity other = make_cpu_identity(t, testing::amd_epyc_msr_index_list(), caps());
  StateWriter w;
  save_meta(w, other);
  const std::string file = w.finish();
  auto reader = StateReader::parse(file);
  ASSERT_TRUE(reader.ok());
  auto r = check_meta(*reader, host());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("another CPU"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("rebake"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(other.to_string()), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(host().to_string()), std::string::npos) << r.error().message;
}

TEST(MetaSection, MissingOrMalformedMetaIsAnError) {
  StateWriter w;
  w.begin_section("vm");
  w.end_section();
  const std::string no_meta = w.finish();
  auto reader = StateReader::parse(no_meta);
  ASSERT_TRUE(reader.ok());
  EXPECT_FALSE(check_meta(*reader, host()).ok());

  StateWriter bad;
  bad.begin_section("meta");
  bad.string(std::string(1000, 'x'));  // a vendor string far past any real one
  bad.end_section();
  const std::string bad_meta = bad.finish();
  auto r2 = StateReader::parse(bad_meta);
  ASSERT_TRUE(r2.ok());
  EXPECT_FALSE(check_meta(*r2, host()).ok());
}

}  // namespace
}  // namespace kiln::vmm::kvm
