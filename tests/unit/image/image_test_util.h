// Synthetic inputs for the image unit tests: tiny ELF files, bzImage headers, env guards.
#pragma once

#include "common/fs.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

namespace kiln::image::testing {

/// A minimal x86-64 ELF64 executable image: one PT_LOAD, plus PT_INTERP if `interp` is set.
inline std::string make_elf(const std::optional<std::string>& interp, size_t padding = 0) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = interp ? 2 : 1;
  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  Elf64_Phdr in{};
  in.p_type = PT_INTERP;
  in.p_offset = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
  in.p_filesz = interp ? interp->size() + 1 : 0;
  std::string out(sizeof eh, '\0');
  std::memcpy(out.data(), &eh, sizeof eh);
  out.append(reinterpret_cast<const char*>(&load), sizeof load);  // NOLINT: byte view of a POD
  if (interp) {
    out.append(reinterpret_cast<const char*>(&in), sizeof in);  // NOLINT: byte view of a POD
    out += *interp;
    out.push_back('\0');
  }
  out.append(padding, 'x');
  return out;
}

/// The first bytes of a bzImage whose setup header names kernel `release`.
inline std::string make_bzimage(const std::string& version_string, uint16_t ptr = 0x300) {
  std::string img(0x1000, '\0');
  img[0x1FE] = '\x55';
  img[0x1FF] = '\xAA';
  std::memcpy(img.data() + 0x202, "HdrS", 4);
  img[0x20E] = static_cast<char>(ptr & 0xFF);
  img[0x20F] = static_cast<char>(ptr >> 8);
  if (0x200u + ptr + version_string.size() + 1 > img.size()) img.resize(0x200u + ptr + version_string.size() + 1);
  std::memcpy(img.data() + 0x200 + ptr, version_string.c_str(), version_string.size() + 1);
  return img;
}

inline void write(const std::filesystem::path& p, const std::string& data) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(f.good()) << p;
}

inline fs::TempDir temp_dir() {
  auto t = fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-image-test-");
  if (!t) std::abort();
  return std::move(t).value();
}

/// Sets (or unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace kiln::image::testing
