#include "vmm/kvm/vcpu_state.h"

#include "cpuid_test_table.h"
#include "vmm/kvm/msr_list.h"
#include "vmm/kvm/state_stream.h"
#include "vmm/kvm/vm_state.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <random>

namespace kiln::vmm::kvm {
namespace {

KvmCaps caps(uint32_t xsave_size = 4096, bool sregs2 = true) {
  KvmCaps c;
  c.api_version = KVM_API_VERSION;
  c.xsave_size = xsave_size;
  c.xsave2 = true;
  c.sregs2 = sregs2;
  return c;
}

/// Fill a KVM ABI struct with a recognisable byte pattern.
template <class T>
void pattern(T& v, uint8_t seed) {
  auto* p = reinterpret_cast<uint8_t*>(&v);  // trivially copyable KVM struct
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(seed + i * 7);
}

template <class T>
bool same(const T& a, const T& b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

VcpuState sample(uint32_t xsave_size = 4096) {
  VcpuState s;
  s.cpuid = guest_cpuid(testing::amd_epyc_supported_cpuid(), 1, 2);
  s.mp_state.mp_state = KVM_MP_STATE_HALTED;
  pattern(s.regs, 1);
  s.has_sregs2 = true;
  pattern(s.sregs2, 2);
  s.xsave.resize(xsave_size);
  for (size_t i = 0; i < s.xsave.size(); ++i) s.xsave[i] = static_cast<uint8_t>(i * 13);
  s.xcrs.nr_xcrs = 1;
  s.xcrs.xcrs[0].value = 0xe7;
  pattern(s.debugregs, 3);
  pattern(s.lapic, 4);
  for (uint32_t idx : {kMsrIa32Tsc, kMsrIa32TscDeadline, 0xc0000082u}) {
    kvm_msr_entry e{};
    e.index = idx;
    e.data = 0x1000 + idx;
    s.msrs.push_back(e);
  }
  pattern(s.events, 5);
  s.tsc_khz = 2596146;
  return s;
}

std::string file_with(const VcpuState& s, uint32_t index = 0) {
  StateWriter w;
  save_vcpu_section(w, index, s);
  return w.finish();
}

Result<VcpuState> load(const std::string& file, uint32_t index, const KvmCaps& c) {
  KILN_ASSIGN_OR_RETURN(auto reader, StateReader::parse(file));
  return load_vcpu_section(reader, index, c);
}

TEST(VcpuStateSection, RoundTripsEveryField) {
  const VcpuState s = sample();
  const std::string file = file_with(s, 3);
  auto back = load(file, 3, caps());
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->cpuid.size(), s.cpuid.size());
  EXPECT_EQ(std::memcmp(back->cpuid.data(), s.cpuid.data(), s.cpuid.size() * sizeof(kvm_cpuid_entry2)), 0);
  EXPECT_TRUE(same(back->mp_state, s.mp_state));
  EXPECT_TRUE(same(back->regs, s.regs));
  EXPECT_TRUE(back->has_sregs2);
  EXPECT_TRUE(same(back->sregs2, s.sregs2));
  EXPECT_EQ(back->xsave, s.xsave);
  EXPECT_TRUE(same(back->xcrs, s.xcrs));
  EXPECT_TRUE(same(back->debugregs, s.debugregs));
  EXPECT_TRUE(same(back->lapic, s.lapic));
  ASSERT_EQ(back->msrs.size(), 3u);
  EXPECT_EQ(back->msrs[2].index, 0xc0000082u);
  EXPECT_EQ(back->msrs[2].data, 0x1000u + 0xc0000082u);
  EXPECT_TRUE(same(back->events, s.events));
  EXPECT_EQ(back->tsc_khz, s.tsc_khz);
}

TEST(VcpuStateSection, PlainSregsRoundTrip) {
  VcpuState s = sample();
  s.has_sregs2 = false;
  pattern(s.sregs, 9);
  auto back = load(file_with(s), 0, caps(4096, false));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_FALSE(back->has_sregs2);
  EXPECT_TRUE(same(back->sregs, s.sregs));
}

TEST(VcpuStateSection, LargerXsaveAreasRoundTrip) {
  auto back = load(file_with(sample(11008)), 0, caps(11008));  // AMX-sized
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->xsave.size(), 11008u);
}

TEST(VcpuStateSection, XsaveSizeFromAnotherHostIsRejected) {
  auto back = load(file_with(sample(4096)), 0, caps(2696 + 4096));
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.error().message.find("another CPU or kernel"), std::string::npos) << back.error().message;
  EXPECT_NE(back.error().message.find("vcpu.0"), std::string::npos) << back.error().message;
}

TEST(VcpuStateSection, Sregs2OnAKernelWithoutItIsRejected) {
  auto back = load(file_with(sample()), 0, caps(4096, false));
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.error().message.find("SREGS2"), std::string::npos) << back.error().message;
}

TEST(VcpuStateSection, WrongIndexIsAMissingSection) {
  EXPECT_FALSE(load(file_with(sample(), 0), 1, caps()).ok());
}

TEST(VcpuStateSection, TooManyMsrsAreRejected) {
  VcpuState s = sample();
  s.msrs.resize(kMaxSavedMsrs + 1);
  auto back = load(file_with(s), 0, caps());
  ASSERT_FALSE(back.ok());
}

TEST(VcpuStateSection, OversizedOrRaggedCpuidIsRejected) {
  VcpuState s = sample();
  s.cpuid.resize(kMaxCpuidEntries + 1);
  EXPECT_FALSE(load(file_with(s), 0, caps()).ok());
  s.cpuid.clear();
  EXPECT_FALSE(load(file_with(s), 0, caps()).ok());  // empty table

  // A CPUID blob that is not a whole number of entries.
  StateWriter w;
  w.begin_section("vcpu.0");
  const std::vector<uint8_t> ragged(sizeof(kvm_cpuid_entry2) + 3, 0);
  w.bytes(ragged);
  w.end_section();
  const std::string file = w.finish();
  auto back = load(file, 0, caps());
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.error().message.find("whole number"), std::string::npos) << back.error().message;
}

TEST(VcpuStateSection, BadEnumsAndCountsAreRejected) {
  VcpuState s = sample();
  s.mp_state.mp_state = 77;
  EXPECT_FALSE(load(file_with(s), 0, caps()).ok());
  s = sample();
  s.xcrs.nr_xcrs = KVM_MAX_XCRS + 1;
  EXPECT_FALSE(load(file_with(s), 0, caps()).ok());
}

/// The section as docs/kvm-state-format.md describes it, written field by field:
/// `fields` of them, plus one stray byte when `trailing`.
std::string hand_written(const VcpuState& s, int fields, bool trailing) {
  StateWriter w;
  w.begin_section("vcpu.0");
  const std::function<void()> writers[] = {
      [&] { w.bytes({reinterpret_cast<const uint8_t*>(s.cpuid.data()), s.cpuid.size() * sizeof(kvm_cpuid_entry2)}); },
      [&] { w.pod(s.mp_state); },
      [&] { w.pod(s.regs); },
      [&] { w.u8(1); },
      [&] { w.pod(s.sregs2); },
      [&] { w.bytes(s.xsave); },
      [&] { w.pod(s.xcrs); },
      [&] { w.pod(s.debugregs); },
      [&] { w.pod(s.lapic); },
      [&] { w.bytes({reinterpret_cast<const uint8_t*>(s.msrs.data()), s.msrs.size() * sizeof(kvm_msr_entry)}); },
      [&] { w.pod(s.events); },
      [&] { w.u32(s.tsc_khz); },
  };
  for (int i = 0; i < fields; ++i) writers[i]();
  if (trailing) w.u8(0);
  w.end_section();
  return w.finish();
}

TEST(VcpuStateSection, TruncatedOrTrailingBytesAreRejected) {
  const VcpuState s = sample();
  ASSERT_TRUE(load(hand_written(s, 12, false), 0, caps()).ok());  // the documented layout
  for (int fields = 0; fields < 12; ++fields)
    EXPECT_FALSE(load(hand_written(s, fields, false), 0, caps()).ok()) << fields << " fields";
  EXPECT_FALSE(load(hand_written(s, 12, true), 0, caps()).ok());
}

TEST(TscKhz, ToleratesCalibrationJitterOnly) {
  EXPECT_TRUE(tsc_khz_compatible(2'596'146, 2'596'146));
  EXPECT_TRUE(tsc_khz_compatible(2'596'146, 2'596'146 + 600));   // ~230 ppm
  EXPECT_TRUE(tsc_khz_compatible(2'596'146, 2'596'146 - 600));
  EXPECT_FALSE(tsc_khz_compatible(2'596'146, 2'596'146 + 700));  // ~270 ppm
  EXPECT_FALSE(tsc_khz_compatible(2'596'146, 3'000'000));
  EXPECT_FALSE(tsc_khz_compatible(2'596'146, 0));
}

TEST(RestoreVcpu, RefusesForeignStateBeforeTouchingTheVcpu) {
  const int not_kvm = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(not_kvm, 0);
  auto r = restore_vcpu(not_kvm, caps(8192), sample(4096));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("rebake"), std::string::npos) << r.error().message;
  auto r2 = restore_vcpu(not_kvm, caps(4096, false), sample(4096));
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.error().message.find("SREGS2"), std::string::npos) << r2.error().message;
  EXPECT_FALSE(save_vcpu(not_kvm, caps(), {}).ok());
  ::close(not_kvm);
}

/// The data of the only section in `file` (container layout: docs/kvm-state-format.md).
std::string only_section_data(const std::string& file) {
  uint64_t offset = 0, length = 0;
  std::memcpy(&offset, file.data() + 24 + 64, 8);
  std::memcpy(&length, file.data() + 24 + 72, 8);
  return file.substr(offset, length);
}

/// A file whose one section `name` holds exactly `data`.
std::string file_with_section(const std::string& name, const std::string& data) {
  StateWriter w;
  w.begin_section(name);
  for (char c : data) w.u8(static_cast<uint8_t>(c));
  w.end_section();
  return w.finish();
}

TEST(SectionLoaders, SurviveMutatedSections) {
  // Valid sections with bytes flipped, lengths changed and tails cut: every loader
  // must fail cleanly or return bounded data, never crash or over-read (ASan build).
  StateWriter vcpu_w, vm_w, meta_w;
  save_vcpu_section(vcpu_w, 0, sample());
  VmState vm;
  vm.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  vm.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  save_vm_section(vm_w, vm);
  CpuIdentity id;
  id.vendor = "AuthenticAMD";
  id.cpuid_digest = "0123456789abcdef";
  save_meta(meta_w, id);
  const std::string vcpu_data = only_section_data(vcpu_w.finish());
  const std::string vm_data = only_section_data(vm_w.finish());
  const std::string meta_data = only_section_data(meta_w.finish());
  std::mt19937 rng(42);
  int accepted = 0;
  for (int round = 0; round < 3000; ++round) {
    const int which = round % 3;
    std::string data = which == 0 ? vcpu_data : which == 1 ? vm_data : meta_data;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % data.size();
      switch (rng() % 4) {
        case 0: data[at] = static_cast<char>(rng()); break;                        // flip a byte
        case 1: data.resize(at); break;                                            // cut the tail
        case 2: data.insert(at, 1 + rng() % 8, static_cast<char>(rng())); break;   // grow
        default: data[at - at % 4] = static_cast<char>(0xff); break;               // huge length prefix
      }
      if (data.empty()) data.push_back(0);
    }
    const std::string file = file_with_section(which == 0 ? "vcpu.0" : which == 1 ? "vm" : "meta", data);
    auto reader = StateReader::parse(file);
    ASSERT_TRUE(reader.ok()) << reader.error().message;
    if (which == 0) {
      auto r = load_vcpu_section(*reader, 0, caps());
      if (r.ok()) {
        ++accepted;
        EXPECT_EQ(r->xsave.size(), 4096u);
        EXPECT_LE(r->msrs.size(), kMaxSavedMsrs);
        EXPECT_LE(r->cpuid.size(), kMaxCpuidEntries);
      }
    } else if (which == 1) {
      accepted += load_vm_section(*reader).ok();
    } else {
      accepted += check_meta(*reader, id).ok();
    }
  }
  EXPECT_LT(accepted, 3000);  // most mutations are caught
}

}  // namespace
}  // namespace kiln::vmm::kvm
