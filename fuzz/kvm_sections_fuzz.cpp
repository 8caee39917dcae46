// Fuzzes what the KVM engine reads out of a state file's sections before it
// creates anything (docs/kvm-state-format.md): the meta check, the VM section
// (irqchip, PIT, clock), vCPU sections (registers, MSRs, XSAVE, events...) and
// the legacy devices' sections. The container parser has its own target
// (kvm_state_fuzz); here every input is re-sealed so mutations get past the
// checksum into the section contents. Must never crash, hang or over-allocate.
#include "vmm/kvm/cpu_identity.h"
#include "vmm/kvm/i8042.h"
#include "vmm/kvm/serial_8250.h"
#include "vmm/kvm/state_stream.h"
#include "vmm/kvm/vcpu_state.h"
#include "vmm/kvm/vm_state.h"

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

using namespace kiln::vmm::kvm;

namespace {

class NoIrq final : public IrqLine {
 public:
  uint32_t gsi() const override { return 4; }
  void pulse() override {}
  void set_level(bool) override {}
};

KvmCaps caps_variant(uint8_t which) {
  KvmCaps caps;
  caps.api_version = 12;
  caps.xsave2 = (which & 1) != 0;
  caps.xsave_size = caps.xsave2 ? 4096 + 64 * (which >> 4) : 4096;
  caps.sregs2 = (which & 2) != 0;
  caps.tsc_control = (which & 4) != 0;
  return caps;
}

template <class Device>
void load_device(const StateReader& reader, const char* section, Device& device) {
  auto in = reader.section(section);
  if (!in) return;
  device.load(*in);
  (void)in->finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 9) return 0;
  const uint8_t variant = data[0];
  std::string file(reinterpret_cast<const char*>(data + 1), size - 1);
  uint64_t sum = XXH3_64bits(file.data(), file.size() - 8);
  std::memcpy(file.data() + file.size() - 8, &sum, sizeof sum);

  auto reader = StateReader::parse(file);
  if (!reader) return 0;

  CpuIdentity host;
  host.vendor = "AuthenticAMD";
  host.family = 25;
  (void)check_meta(*reader, host);
  (void)load_vm_section(*reader);
  const KvmCaps caps = caps_variant(variant);
  for (uint32_t i = 0; i < 2; ++i) (void)load_vcpu_section(*reader, i, caps);

  Serial8250 serial(std::make_unique<NoIrq>());
  load_device(*reader, "dev.serial", serial);
  I8042 i8042([] {});
  load_device(*reader, "dev.i8042", i8042);
  return 0;
}
