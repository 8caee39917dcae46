#include "vmm/kvm/state_stream.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <string>

using namespace kiln::vmm::kvm;

namespace {

// Offsets from docs/kvm-state-format.md, so tests can forge files the writer never makes.
constexpr size_t kHeader = 24;
constexpr size_t kEntry = 80;
size_t name_at(size_t i) { return kHeader + i * kEntry; }
size_t offset_at(size_t i) { return name_at(i) + 64; }
size_t length_at(size_t i) { return name_at(i) + 72; }

template <class T>
void poke(std::string& f, size_t at, T v) {
  std::memcpy(f.data() + at, &v, sizeof v);
}
template <class T>
T peek(const std::string& f, size_t at) {
  T v;
  std::memcpy(&v, f.data() + at, sizeof v);
  return v;
}
// Recompute the trailing checksum so a forged file gets past it to the structural checks.
std::string reseal(std::string f) {
  poke<uint64_t>(f, f.size() - 8, XXH3_64bits(f.data(), f.size() - 8));
  return f;
}

struct Regs {
  uint64_t rip, rsp;
  uint32_t flags;
  uint32_t pad;
};

std::string sample() {
  StateWriter w;
  w.begin_section("vm");
  w.u8(0x12);
  w.u16(0x3456);
  w.u32(0x789abcde);
  w.u64(0x0123456789abcdefull);
  w.end_section();
  w.begin_section("vcpu.0");
  w.pod(Regs{0xfff0, 0x8000, 2, 0});
  w.string("cpu zero");
  w.end_section();
  w.begin_section("dev.empty");
  w.end_section();
  return w.finish();
}

std::string error_of(std::string_view file) {
  auto r = StateReader::parse(file);
  return r.ok() ? std::string("parsed") : r.error().message;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST(StateStream, RoundTrip) {
  const std::string file = sample();
  EXPECT_EQ(file.substr(0, 8), std::string("KILNKVM\0", 8));
  EXPECT_EQ(peek<uint32_t>(file, 8), kStateFormatVersion);
  EXPECT_EQ(peek<uint32_t>(file, 12), 3u);
  EXPECT_EQ(peek<uint64_t>(file, 16), file.size());

  auto r = StateReader::parse(file);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->section_names(), (std::vector<std::string>{"dev.empty", "vcpu.0", "vm"}));
  EXPECT_TRUE(r->has("vm"));
  EXPECT_FALSE(r->has("vcpu.1"));

  auto vm = r->section("vm");
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ(vm->u8(), 0x12);
  EXPECT_EQ(vm->u16(), 0x3456);
  EXPECT_EQ(vm->u32(), 0x789abcdeu);
  EXPECT_EQ(vm->u64(), 0x0123456789abcdefull);
  EXPECT_TRUE(vm->finish().ok());

  auto cpu = r->section("vcpu.0");
  ASSERT_TRUE(cpu.ok());
  Regs regs{};
  ASSERT_TRUE(cpu->pod(regs));
  EXPECT_EQ(regs.rip, 0xfff0u);
  EXPECT_EQ(regs.rsp, 0x8000u);
  EXPECT_EQ(regs.flags, 2u);
  EXPECT_EQ(cpu->string(64), "cpu zero");
  EXPECT_TRUE(cpu->finish().ok());

  auto empty = r->section("dev.empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->finish().ok());

  auto missing = r->section("dev.virtio-blk");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.error().message, "dev.virtio-blk"));
}

TEST(StateStream, EmptyFileRoundTripsAndIsDeterministic) {
  StateWriter w;
  const std::string file = w.finish();
  EXPECT_EQ(file.size(), kHeader + 8);
  auto r = StateReader::parse(file);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->section_names().empty());
  EXPECT_EQ(sample(), sample());
}

TEST(StateStream, SectionReaderFailureIsSticky) {
  StateWriter w;
  w.begin_section("dev.serial");
  w.u32(7);
  w.u32(0xffffffff);
  w.end_section();
  const std::string file = w.finish();
  auto r = StateReader::parse(file);
  ASSERT_TRUE(r.ok());
  auto s = r->section("dev.serial");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->u32(), 7u);
  EXPECT_EQ(s->u16(), 0xffff);
  EXPECT_EQ(s->u64(), 0u);  // only 2 bytes left: fails
  EXPECT_FALSE(s->ok());
  EXPECT_EQ(s->u16(), 0u);  // would fit, but failure is sticky
  EXPECT_EQ(s->u8(), 0u);
  EXPECT_EQ(s->bytes(100), "");
  s->fail("a later error");
  auto done = s->finish();
  ASSERT_FALSE(done.ok());
  EXPECT_TRUE(contains(done.error().message, "dev.serial"));
  EXPECT_TRUE(contains(done.error().message, "needs 8 bytes")) << done.error().message;
  EXPECT_FALSE(contains(done.error().message, "a later error"));
}

TEST(StateStream, SectionReaderChecksBlobsAndLeftovers) {
  StateWriter w;
  w.begin_section("blobs");
  w.string("0123456789");
  w.pod(uint32_t{5});
  w.u8(1);
  w.end_section();
  const std::string file = w.finish();
  auto r = StateReader::parse(file);
  ASSERT_TRUE(r.ok());

  auto too_long = r->section("blobs");
  EXPECT_EQ(too_long->bytes(9), "");
  EXPECT_TRUE(contains(too_long->finish().error().message, "at most 9"));

  auto wrong_pod = r->section("blobs");
  EXPECT_EQ(wrong_pod->string(10), "0123456789");
  uint64_t big = 99;
  EXPECT_FALSE(wrong_pod->pod(big));  // written as 4 bytes, read as 8
  EXPECT_FALSE(wrong_pod->ok());

  auto leftover = r->section("blobs");
  EXPECT_EQ(leftover->string(10), "0123456789");
  uint32_t small = 0;
  EXPECT_TRUE(leftover->pod(small));
  EXPECT_EQ(small, 5u);
  auto done = leftover->finish();  // the u8 was never read
  ASSERT_FALSE(done.ok());
  EXPECT_TRUE(contains(done.error().message, "1 of its")) << done.error().message;

  auto semantic = r->section("blobs");
  semantic->fail("queue size 3 is not a power of two");
  EXPECT_TRUE(contains(semantic->finish().error().message, "queue size 3"));
}

TEST(StateStream, BlobLengthPastTheSectionFails) {
  StateWriter w;
  w.begin_section("s");
  w.u32(1000);  // a length prefix claiming more than the section holds
  w.u32(0);
  w.end_section();
  const std::string file = w.finish();
  auto r = StateReader::parse(file);
  ASSERT_TRUE(r.ok());
  auto s = r->section("s");
  EXPECT_EQ(s->bytes(1 << 20), "");
  EXPECT_TRUE(contains(s->finish().error().message, "runs past the end"));
}

TEST(StateStream, RejectsWrongMagic) {
  std::string f = sample();
  f[0] = 'Q';
  EXPECT_TRUE(contains(error_of(f), "not a kiln KVM state file"));
  EXPECT_TRUE(contains(error_of("QEMU migration stream, not ours"), "not a kiln KVM state file"));
  EXPECT_TRUE(contains(error_of(""), "empty"));
}

TEST(StateStream, RejectsOtherVersions) {
  for (uint32_t v : {kStateFormatVersion + 1, kStateFormatVersion - 1, 0xffffffffu}) {
    std::string f = sample();
    poke<uint32_t>(f, 8, v);
    const std::string e = error_of(reseal(f));
    EXPECT_TRUE(contains(e, "written by state format " + std::to_string(v))) << e;
    EXPECT_TRUE(contains(e, "this kiln reads " + std::to_string(kStateFormatVersion))) << e;
    EXPECT_TRUE(contains(e, "rebake")) << e;
  }
}

TEST(StateStream, RejectsEveryTruncationAndExtension) {
  const std::string f = sample();
  for (size_t n = 0; n < f.size(); ++n) {
    const std::string e = error_of(std::string_view(f).substr(0, n));
    EXPECT_TRUE(n == 0 ? contains(e, "empty") : contains(e, "truncated")) << n << ": " << e;
  }
  EXPECT_TRUE(contains(error_of(f + std::string(1, '\0')), "corrupt"));
}

TEST(StateStream, RejectsAnyFlippedBit) {
  const std::string f = sample();
  // Bytes 0..11 are magic and version (their own messages); every other bit is checksummed.
  for (size_t i = 12; i < f.size(); ++i) {
    std::string g = f;
    g[i] = static_cast<char>(g[i] ^ 0x10);
    EXPECT_NE(error_of(g), "parsed") << "byte " << i;
  }
  std::string g = f;
  g[f.size() - 20] ^= 1;
  EXPECT_TRUE(contains(error_of(g), "corrupt (checksum mismatch)"));
}

TEST(StateStream, RejectsOversizedFiles) {
  std::string f = sample();
  f.resize(kMaxStateFileBytes + 1);
  EXPECT_TRUE(contains(error_of(f), "more than"));
}

TEST(StateStream, RejectsForgedSectionTables) {
  const std::string f = sample();  // sections in table order: vm, vcpu.0, dev.empty
  auto forged = [&](auto edit) {
    std::string g = f;
    edit(g);
    return error_of(reseal(g));
  };
  EXPECT_EQ(forged([](std::string&) {}), "parsed");  // the forging itself is sound

  // Duplicate name.
  EXPECT_TRUE(contains(forged([](std::string& g) { std::memcpy(g.data() + name_at(2), "vm\0\0\0\0\0\0\0\0\0", 10); }),
                       "appears twice"));
  // Overlap: vcpu.0 starts one byte early (inside vm).
  EXPECT_TRUE(contains(forged([](std::string& g) {
                         poke<uint64_t>(g, offset_at(1), peek<uint64_t>(g, offset_at(1)) - 1);
                         poke<uint64_t>(g, length_at(1), peek<uint64_t>(g, length_at(1)) + 1);
                       }),
                       "overlaps"));
  // Gap: vm one byte shorter leaves a byte nobody reads.
  EXPECT_TRUE(contains(forged([](std::string& g) { poke<uint64_t>(g, length_at(0), peek<uint64_t>(g, length_at(0)) - 1); }),
                       "unaccounted"));
  // Section data outside the file, including offset+length wrapping around 2^64.
  EXPECT_TRUE(contains(forged([](std::string& g) { poke<uint64_t>(g, length_at(2), 1u << 30); }), "outside"));
  EXPECT_TRUE(contains(forged([](std::string& g) {
                         poke<uint64_t>(g, offset_at(1), ~uint64_t{0} - 3);
                         poke<uint64_t>(g, length_at(1), 8);
                       }),
                       "outside"));
  // Section data inside the header or table.
  EXPECT_TRUE(contains(forged([](std::string& g) { poke<uint64_t>(g, offset_at(0), 0); }), "outside"));
  // Section count larger than the file can hold, and one less than written (a gap).
  EXPECT_TRUE(contains(forged([](std::string& g) { poke<uint32_t>(g, 12, 0xffffffff); }), "do not fit"));
  EXPECT_TRUE(contains(forged([](std::string& g) { poke<uint32_t>(g, 12, 2); }), "corrupt"));
}

TEST(StateStream, RejectsBadNames) {
  const std::string f = sample();
  auto with_name = [&](std::string_view name) {
    std::string g = f;
    std::memset(g.data() + name_at(0), 0, 64);
    std::memcpy(g.data() + name_at(0), name.data(), name.size());
    return error_of(reseal(g));
  };
  EXPECT_EQ(with_name("vm"), "parsed");
  EXPECT_EQ(with_name(std::string(64, 'n')), "parsed");  // exactly 64 bytes, no NUL: allowed
  EXPECT_TRUE(contains(with_name(""), "invalid name"));
  EXPECT_TRUE(contains(with_name("v m"), "invalid name"));
  EXPECT_TRUE(contains(with_name("vm\n"), "invalid name"));
  EXPECT_TRUE(contains(with_name("\x7f"), "invalid name"));
  EXPECT_TRUE(contains(with_name("vm\xc3\xa9"), "invalid name"));
  EXPECT_TRUE(contains(with_name(std::string("vm\0junk", 7)), "invalid name"));  // bytes after the NUL
}

TEST(StateStreamDeathTest, WriterMisuseIsABug) {
  EXPECT_DEATH({ StateWriter w; w.u32(1); }, "outside a section");
  EXPECT_DEATH({ StateWriter w; w.begin_section(std::string(65, 'n')); }, "longer than 64");
  EXPECT_DEATH({ StateWriter w; w.begin_section("bad name"); }, "not printable");
  EXPECT_DEATH(
      {
        StateWriter w;
        w.begin_section("a");
        w.end_section();
        w.begin_section("a");
      },
      "written twice");
  EXPECT_DEATH({ StateWriter w; w.begin_section("a"); w.begin_section("b"); }, "inside section");
  EXPECT_DEATH({ StateWriter w; w.begin_section("a"); (void)w.finish(); }, "finish");
  EXPECT_DEATH({ StateWriter w; w.end_section(); }, "without begin_section");
}
