#include "vmm/kvm/serial_8250.h"
#include "vmm/kvm/state_stream.h"

#include "test_irq_line.h"

#include <gtest/gtest.h>

namespace kiln::vmm::kvm {
namespace {

using testing::CountingIrqLine;

struct SerialFixture {
  CountingIrqLine* irq = new CountingIrqLine(4);
  Serial8250 serial{std::unique_ptr<IrqLine>(irq)};
  uint8_t in(uint64_t reg) {
    uint8_t v = 0xaa;
    serial.read(reg, {&v, 1});
    return v;
  }
  void out(uint64_t reg, uint8_t v) { serial.write(reg, {&v, 1}); }
};

TEST(Serial8250, TransmittedBytesAreTheConsoleOutput) {
  SerialFixture f;
  for (char c : std::string("hello\n")) f.out(0, static_cast<uint8_t>(c));
  EXPECT_EQ(f.serial.output(), "hello\n");
  EXPECT_EQ(f.in(5) & 0x60, 0x60);  // THRE and TEMT: always ready to send
}

TEST(Serial8250, PassesLinuxScratchAndLoopbackProbes) {
  SerialFixture f;
  f.out(7, 0x5a);
  EXPECT_EQ(f.in(7), 0x5a);
  f.out(4, 0x10 | 0x0a);            // loopback, RTS, OUT2
  EXPECT_EQ(f.in(6) & 0xf0, 0x90);  // CTS and DCD, as 8250 autoconfig expects
  f.out(0, 'x');                    // looped back, not printed
  EXPECT_EQ(f.serial.output(), "");
  EXPECT_EQ(f.in(2) & 0xc0, 0xc0);  // FIFOs: a 16550A
}

TEST(Serial8250, DivisorLatchDoesNotPrint) {
  SerialFixture f;
  f.out(3, 0x80);  // DLAB
  f.out(0, 0x01);
  f.out(1, 0x00);
  EXPECT_EQ(f.in(0), 0x01);
  f.out(3, 0x03);
  EXPECT_EQ(f.serial.output(), "");
}

TEST(Serial8250, ThrEmptyInterruptFollowsIerAndIsAcknowledgedByIir) {
  SerialFixture f;
  f.out(0, 'a');
  EXPECT_EQ(f.irq->pulses, 0);  // THRI disabled: no interrupt
  f.out(1, 0x02);               // enable THRI while THR is empty: interrupt now
  EXPECT_EQ(f.irq->pulses, 1);
  EXPECT_EQ(f.in(2) & 0x0f, 0x02);  // THR empty is the pending cause
  EXPECT_EQ(f.in(2) & 0x0f, 0x01);  // reading IIR acknowledged it
  f.out(0, 'b');
  EXPECT_EQ(f.irq->pulses, 2);
  f.out(1, 0x00);
  f.out(0, 'c');
  EXPECT_EQ(f.irq->pulses, 2);
}

TEST(Serial8250, KeepsABoundedTail) {
  SerialFixture f;
  for (size_t i = 0; i < Serial8250::kMaxKeptBytes + 10; ++i) f.out(0, 'z');
  std::string out = f.serial.output();
  EXPECT_LE(out.size(), Serial8250::kMaxKeptBytes + 64);
  EXPECT_NE(out.find("dropped"), std::string::npos);
}

TEST(Serial8250, StateRoundTripsAndHostileStateFails) {
  SerialFixture f;
  f.out(1, 0x02);
  f.out(7, 0x33);
  StateWriter w;
  w.begin_section("dev.serial");
  f.serial.save(w);
  w.end_section();
  std::string file = w.finish();
  auto reader = StateReader::parse(file);
  ASSERT_TRUE(reader);
  auto section = reader->section("dev.serial");
  ASSERT_TRUE(section);
  SerialFixture g;
  g.serial.load(*section);
  ASSERT_TRUE(section->finish());
  EXPECT_EQ(g.in(7), 0x33);
  EXPECT_EQ(g.in(1), 0x02);

  StateWriter bad;
  bad.begin_section("dev.serial");
  for (int i = 0; i < 6; ++i) bad.u8(0);
  bad.u8(7);  // the THR flag is a bool
  bad.end_section();
  std::string bad_file = bad.finish();
  auto bad_reader = StateReader::parse(bad_file);
  ASSERT_TRUE(bad_reader);
  auto bad_section = bad_reader->section("dev.serial");
  ASSERT_TRUE(bad_section);
  g.serial.load(*bad_section);
  EXPECT_FALSE(bad_section->finish());
}

}  // namespace
}  // namespace kiln::vmm::kvm
