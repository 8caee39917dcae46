// The seed corpus of fuzz/kvm_state_fuzz.cpp is written by StateWriter, so it must
// follow the format: a seed of an old format version stops at the version check and
// fuzzes nothing. This test fails when the seeds are stale; regenerate them with
//   KILN_WRITE_FUZZ_CORPUS=1 build/<dir>/bin/kiln_kvm_base_tests --gtest_filter='StateCorpus.*'
#include "vmm/kvm/state_stream.h"

#include "common/fs.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

using namespace kiln;
using namespace kiln::vmm::kvm;

namespace {

// Section bodies are op streams for the fuzzer's read mix: op byte, then its operand.
struct Blob {
  uint64_t a[5];
};

void vcpu(StateWriter& w, uint32_t index) {
  w.begin_section("vcpu." + std::to_string(index));
  w.u8(3);
  w.u64(0xfff0 + index);
  w.u8(5);
  w.pod(Blob{{1, 2, 3, 4, 5}});
  w.u8(6);
  w.string("regs");
  w.u8(1);
  w.u16(0x10);
  w.end_section();
}

std::map<std::string, std::string> seeds() {
  std::map<std::string, std::string> out;
  {
    StateWriter w;
    out["no_sections"] = w.finish();
  }
  {
    StateWriter w;
    w.begin_section("meta");
    w.u8(6);
    w.string("kiln 0.1.0");
    w.end_section();
    w.begin_section("vm");
    w.u8(2);
    w.u32(0x1234);
    w.u8(4);
    w.bytes(std::vector<uint8_t>(40, 0xab));
    w.end_section();
    vcpu(w, 0);
    out["one_vcpu"] = w.finish();
  }
  {
    StateWriter w;
    for (uint32_t i = 0; i < 4; ++i) vcpu(w, i);
    w.begin_section("dev.serial");
    w.end_section();
    w.begin_section("dev.virtio-console");
    w.u8(0);
    w.u8(9);
    w.u8(0xff);  // the fuzzer's semantic failure
    w.end_section();
    w.begin_section(std::string(64, 'n'));
    w.u8(3);
    w.u32(7);  // a u64 read runs past the end
    w.end_section();
    out["many_sections"] = w.finish();
  }
  return out;
}

std::filesystem::path corpus_dir() {
  // Not from __FILE__: a compiler cache (ccache's base_dir) may make it relative.
  return std::filesystem::path(KILN_SOURCE_DIR) / "fuzz" / "corpus" / "kvm_state";
}

}  // namespace

TEST(StateCorpus, SeedsParseAndAreCommitted) {
  const bool write = std::getenv("KILN_WRITE_FUZZ_CORPUS") != nullptr;
  for (const auto& [name, bytes] : seeds()) {
    ASSERT_TRUE(StateReader::parse(bytes).ok()) << name;
    const auto path = corpus_dir() / name;
    if (write) {
      ASSERT_TRUE(fs::make_dirs(corpus_dir()).ok());
      std::ofstream(path, std::ios::binary) << bytes;
    }
    auto on_disk = fs::read_file(path, kMaxStateFileBytes);
    ASSERT_TRUE(on_disk.ok()) << on_disk.error().message;
    EXPECT_EQ(*on_disk, bytes) << path << " is stale: regenerate it (see the top of this file)";
  }
}
