#include "image/elf_interp.h"

#include "image_test_util.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstring>

namespace kiln::image {
namespace {

TEST(ElfInterp, SystemShellIsDynamic) {
  auto r = elf_interpreter("/bin/sh");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->has_value());
  EXPECT_NE((*r)->find("ld-linux"), std::string::npos) << **r;
}

TEST(ElfInterp, StaticBusyboxHasNone) {
  if (!std::filesystem::exists("/bin/busybox")) GTEST_SKIP() << "/bin/busybox absent (package busybox-static)";
  auto r = elf_interpreter("/bin/busybox");
  ASSERT_TRUE(r) << r.error().message;
  // Debian's busybox package is dynamic, busybox-static is not: report which one is here.
  if (r->has_value()) GTEST_SKIP() << "/bin/busybox is dynamic (" << **r << "); install busybox-static";
  EXPECT_FALSE(r->has_value());
}

TEST(ElfInterp, SyntheticFiles) {
  auto s = elf_interpreter_from_bytes(testing::make_elf(std::nullopt), "static");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_FALSE(s->has_value());
  auto d = elf_interpreter_from_bytes(testing::make_elf("/lib/ld-musl-x86_64.so.1"), "dyn");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->value_or(""), "/lib/ld-musl-x86_64.so.1");
}

TEST(ElfInterp, GarbageIsAnErrorNotACrash) {
  for (std::string bad : {std::string(), std::string("\x7f"), std::string("#!/bin/sh\necho hi\n"),
                          std::string(4096, '\0'), std::string("\x7f" "ELF")}) {
    auto r = elf_interpreter_from_bytes(bad, "bad");
    EXPECT_FALSE(r) << "accepted " << bad.size() << " bytes";
  }
  auto not_elf = elf_interpreter_from_bytes("#!/bin/sh\n", "script.sh");
  ASSERT_FALSE(not_elf);
  EXPECT_NE(not_elf.error().message.find("script.sh is not an ELF"), std::string::npos);

  std::string elf = testing::make_elf("/lib64/ld-linux-x86-64.so.2");
  // Every strict prefix cuts the header, the program headers or the interpreter string.
  for (size_t n = 0; n < elf.size(); ++n) EXPECT_FALSE(elf_interpreter_from_bytes(elf.substr(0, n), "cut")) << n;

  auto patch = [&](size_t offset, const void* v, size_t len) {
    std::string e = elf;
    std::memcpy(e.data() + offset, v, len);
    return elf_interpreter_from_bytes(e, "patched");
  };
  uint64_t huge = ~uint64_t{0};
  EXPECT_FALSE(patch(offsetof(Elf64_Ehdr, e_phoff), &huge, sizeof huge));
  uint16_t many = 0xFFFF;
  EXPECT_FALSE(patch(offsetof(Elf64_Ehdr, e_phnum), &many, sizeof many));
  uint16_t small = 8;
  EXPECT_FALSE(patch(offsetof(Elf64_Ehdr, e_phentsize), &small, sizeof small));
  size_t interp_ph = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
  EXPECT_FALSE(patch(interp_ph + offsetof(Elf64_Phdr, p_offset), &huge, sizeof huge));
  EXPECT_FALSE(patch(interp_ph + offsetof(Elf64_Phdr, p_filesz), &huge, sizeof huge));
  char cls = ELFCLASS32;
  EXPECT_FALSE(patch(EI_CLASS, &cls, 1));
}

TEST(ElfInterp, Files) {
  auto tmp = testing::temp_dir();
  testing::write(tmp.path() / "dyn", testing::make_elf("/x/ld.so", 1000));
  testing::write(tmp.path() / "text", "hello");
  auto d = elf_interpreter(tmp.path() / "dyn");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->value_or(""), "/x/ld.so");
  EXPECT_FALSE(elf_interpreter(tmp.path() / "text"));
  EXPECT_FALSE(elf_interpreter(tmp.path() / "absent"));
  EXPECT_FALSE(elf_interpreter(tmp.path()));
  EXPECT_FALSE(elf_interpreter("/dev/null"));
  // A FIFO has no writer: opening it must not block.
  ASSERT_EQ(::mkfifo((tmp.path() / "fifo").c_str(), 0600), 0);
  EXPECT_FALSE(elf_interpreter(tmp.path() / "fifo"));
}

}  // namespace
}  // namespace kiln::image
