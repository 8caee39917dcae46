#include "vmm/kvm/bzimage.h"

#include <asm/bootparam.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace kiln::vmm::kvm {
namespace {

namespace bl = boot_layout;

// A synthetic bzImage: a valid setup header, 4 setup sectors, `kernel_bytes` of code.
std::string fake_bzimage(size_t kernel_bytes = 0x4000) {
  std::string img(5 * 512 + kernel_bytes, '\0');
  setup_header h{};
  h.setup_sects = 4;
  h.boot_flag = 0xaa55;
  h.header = 0x53726448;
  h.version = 0x020f;
  h.loadflags = 0x01;
  h.xloadflags = 0x01;
  h.init_size = 0x100000;
  h.initrd_addr_max = 0x7fffffff;
  h.cmdline_size = 2047;
  std::memcpy(img.data() + 0x1f1, &h, sizeof h);
  for (size_t i = 5 * 512; i < img.size(); ++i) img[i] = static_cast<char>(i * 7);
  return img;
}

template <class F>
std::string patched(F&& f) {
  std::string img = fake_bzimage();
  setup_header h{};
  std::memcpy(&h, img.data() + 0x1f1, sizeof h);
  f(h);
  std::memcpy(img.data() + 0x1f1, &h, sizeof h);
  return img;
}

TEST(BzImage, ParsesAValidHeader) {
  auto k = parse_bzimage(fake_bzimage());
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_EQ(k->header.setup_bytes, 5u * 512);
  EXPECT_EQ(k->kernel_bytes(), 0x4000u);
  EXPECT_EQ(k->header.cmdline_size, 2047u);
  // Every field at the offset the kernel's own struct puts it (asm/bootparam.h).
  EXPECT_EQ(k->header.protocol, 0x020f);
  EXPECT_EQ(k->header.loadflags, 0x01);
  EXPECT_EQ(k->header.xloadflags, 0x01);
  EXPECT_EQ(k->header.init_size, 0x100000u);
  EXPECT_EQ(k->header.initrd_addr_max, 0x7fffffffu);
}

TEST(BzImage, RejectsWhatIsNotABootableBzImage) {
  EXPECT_FALSE(parse_bzimage(std::string(100, 'x')));
  EXPECT_FALSE(parse_bzimage(patched([](setup_header& h) { h.boot_flag = 0; })));
  EXPECT_FALSE(parse_bzimage(patched([](setup_header& h) { h.header = 0x12345678; })));
  EXPECT_FALSE(parse_bzimage(patched([](setup_header& h) { h.version = 0x0206; })));
  EXPECT_FALSE(parse_bzimage(patched([](setup_header& h) { h.loadflags = 0; })));
  EXPECT_FALSE(parse_bzimage(patched([](setup_header& h) { h.xloadflags = 0; })));
  // setup_sects pointing past the end of the file
  EXPECT_FALSE(parse_bzimage(patched([](setup_header& h) { h.setup_sects = 255; })));
  // init_size smaller than the code itself
  EXPECT_FALSE(parse_bzimage(patched([](setup_header& h) { h.init_size = 16; })));
  std::string truncated = fake_bzimage();
  truncated.resize(0x1f1 + 10);
  EXPECT_FALSE(parse_bzimage(truncated));
}

class LoadLinux : public ::testing::Test {
 protected:
  void SetUp() override {
    initrd_ = std::filesystem::temp_directory_path() / ("kiln-bzimage-test-" + std::to_string(::getpid()));
    std::ofstream(initrd_) << std::string(10000, 'i');
  }
  void TearDown() override { std::filesystem::remove(initrd_); }
  std::filesystem::path initrd_;
};

TEST_F(LoadLinux, PlacesKernelInitrdCmdlineAndZeroPage) {
  auto k = parse_bzimage(fake_bzimage());
  ASSERT_TRUE(k);
  auto mem = GuestMemory::anonymous(64 << 20);
  ASSERT_TRUE(mem);
  auto entry = load_linux(*k, initrd_, "console=ttyS0 quiet", *mem);
  ASSERT_TRUE(entry) << entry.error().message;
  EXPECT_EQ(*entry, bl::kKernelLoad + 0x200);

  std::string code(0x4000, '\0');
  ASSERT_TRUE(mem->read(bl::kKernelLoad, code.data(), code.size()));
  EXPECT_EQ(code, k->data.substr(k->header.setup_bytes));

  boot_params p{};
  ASSERT_TRUE(mem->read(bl::kZeroPage, &p, sizeof p));
  EXPECT_EQ(p.hdr.type_of_loader, 0xff);
  EXPECT_EQ(p.hdr.cmd_line_ptr, bl::kCmdline);
  char cmdline[32] = {};
  ASSERT_TRUE(mem->read(bl::kCmdline, cmdline, sizeof cmdline));
  EXPECT_STREQ(cmdline, "console=ttyS0 quiet");
  EXPECT_EQ(p.hdr.ramdisk_size, 10000u);
  EXPECT_EQ(p.hdr.ramdisk_image % 4096, 0u);
  EXPECT_LE(uint64_t{p.hdr.ramdisk_image} + p.hdr.ramdisk_size, mem->size());
  EXPECT_GE(p.hdr.ramdisk_image, bl::kKernelLoad + 0x100000);  // clear of init_size
  char first = 0;
  ASSERT_TRUE(mem->read(p.hdr.ramdisk_image, &first, 1));
  EXPECT_EQ(first, 'i');
  ASSERT_EQ(p.e820_entries, 2);
  EXPECT_EQ(p.e820_table[0].addr, 0u);
  EXPECT_EQ(p.e820_table[1].addr, bl::kKernelLoad);
  EXPECT_EQ(p.e820_table[1].addr + p.e820_table[1].size, mem->size());
}

TEST_F(LoadLinux, RefusesACommandLineTheKernelCannotTake) {
  auto k = parse_bzimage(fake_bzimage());
  ASSERT_TRUE(k);
  auto mem = GuestMemory::anonymous(64 << 20);
  ASSERT_TRUE(mem);
  EXPECT_FALSE(load_linux(*k, initrd_, std::string(3000, 'a'), *mem));
}

TEST_F(LoadLinux, RefusesAGuestTooSmallForTheKernel) {
  auto k = parse_bzimage(patched([](setup_header& h) { h.init_size = 0x4000000; }));
  ASSERT_TRUE(k);
  auto mem = GuestMemory::anonymous(32 << 20);
  ASSERT_TRUE(mem);
  EXPECT_FALSE(load_linux(*k, initrd_, "", *mem));
}

TEST_F(LoadLinux, MissingInitramfsIsAClearError) {
  auto k = parse_bzimage(fake_bzimage());
  ASSERT_TRUE(k);
  auto mem = GuestMemory::anonymous(64 << 20);
  ASSERT_TRUE(mem);
  auto r = load_linux(*k, "/nonexistent/initrd", "", *mem);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/nonexistent/initrd"), std::string::npos);
}

}  // namespace
}  // namespace kiln::vmm::kvm
