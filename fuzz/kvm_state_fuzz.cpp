// Fuzzes the KVM state file parser (docs/kvm-state-format.md): a state file on disk
// is untrusted. Each input is parsed as-is and again with its trailing checksum
// recomputed, so mutations reach the section-table checks behind the checksum.
// Every section is then read with a data-driven mix of SectionReader calls.
// Must never crash, hang or allocate without bound; anything that parses must
// survive a rewrite through StateWriter unchanged.
#include "vmm/kvm/state_stream.h"

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

using namespace kiln::vmm::kvm;

namespace {

struct Blob {
  uint64_t a[5];
};

// Read `in` as a sequence of (op byte, operand) pairs until it fails or runs dry.
void read_mixed(SectionReader& in) {
  for (int i = 0; i < 512 && in.ok(); ++i) {
    uint8_t op = in.u8();
    switch (op % 8) {
      case 0: (void)in.u8(); break;
      case 1: (void)in.u16(); break;
      case 2: (void)in.u32(); break;
      case 3: (void)in.u64(); break;
      case 4: (void)in.bytes(size_t{op} * 16); break;
      case 5: { Blob b; (void)in.pod(b); break; }
      case 6: (void)in.string(64); break;
      default: if (op == 0xff) in.fail("semantic check"); break;
    }
  }
  if (!in.ok() && (in.u64() != 0 || !in.bytes(1 << 20).empty())) std::abort();  // sticky: zeros
  (void)in.finish();
}

// All bytes of a section, through the public reader only.
std::string contents(const StateReader& reader, const std::string& name) {
  auto in = reader.section(name);
  if (!in) std::abort();  // listed but missing
  std::string out;
  for (uint8_t b = in->u8(); in->ok(); b = in->u8()) out.push_back(static_cast<char>(b));
  return out;
}

void check(std::string_view file) {
  auto reader = StateReader::parse(file);
  if (!reader) return;
  StateWriter again;
  for (const std::string& name : reader->section_names()) {
    auto section = reader->section(name);
    if (!section) std::abort();
    read_mixed(*section);
    again.begin_section(name);
    for (char c : contents(*reader, name)) again.u8(static_cast<uint8_t>(c));
    again.end_section();
  }
  const std::string rewritten = again.finish();
  auto reparsed = StateReader::parse(rewritten);
  if (!reparsed || reparsed->section_names() != reader->section_names()) std::abort();
  for (const std::string& name : reader->section_names())
    if (contents(*reparsed, name) != contents(*reader, name)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  check(input);
  if (size >= 8) {
    std::string sealed(input);
    uint64_t sum = XXH3_64bits(sealed.data(), sealed.size() - 8);
    std::memcpy(sealed.data() + sealed.size() - 8, &sum, sizeof sum);
    check(sealed);
  }
  return 0;
}
