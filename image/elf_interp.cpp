#include "image/elf_interp.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

namespace kiln::image {
namespace {

// Limits that no real executable comes near; they keep a hostile file from
// making us allocate or loop much.
constexpr uint16_t kMaxPhnum = 4096;
constexpr uint64_t kMaxInterpLen = 4096;  // PATH_MAX

// Reads exactly `len` bytes at `offset`, or fails saying the file is truncated.
using ReadAt = std::function<Result<std::string>(uint64_t offset, size_t len)>;

template <typename T>
T load(const std::string& bytes, size_t offset = 0) {
  T value;
  // SAFETY: callers only load from buffers they read with at least offset + sizeof(T) bytes.
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

Result<std::optional<std::string>> parse(const ReadAt& read_at, uint64_t file_size, std::string_view what) {
  if (file_size < sizeof(Elf64_Ehdr)) {
    // Short files can still be recognised as "not ELF" vs "truncated ELF".
    KILN_ASSIGN_OR_RETURN(std::string ident, read_at(0, static_cast<size_t>(std::min<uint64_t>(file_size, SELFMAG))));
    if (ident.size() < SELFMAG || std::memcmp(ident.data(), ELFMAG, SELFMAG) != 0)
      return make_error("{} is not an ELF executable (no ELF magic)", what);
    return make_error("{} is a truncated ELF file ({} bytes)", what, file_size);
  }
  KILN_ASSIGN_OR_RETURN(std::string head, read_at(0, sizeof(Elf64_Ehdr)));
  if (std::memcmp(head.data(), ELFMAG, SELFMAG) != 0)
    return make_error("{} is not an ELF executable (no ELF magic)", what);
  if (static_cast<unsigned char>(head[EI_CLASS]) != ELFCLASS64)
    return make_error("{} is not a 64-bit ELF file; kiln only runs x86-64 executables", what);
  if (static_cast<unsigned char>(head[EI_DATA]) != ELFDATA2LSB)
    return make_error("{} is a big-endian ELF file; kiln only runs x86-64 executables", what);
  auto eh = load<Elf64_Ehdr>(head);
  if (eh.e_phnum == 0) return std::optional<std::string>{};
  if (eh.e_phnum == PN_XNUM || eh.e_phnum > kMaxPhnum)
    return make_error("{} declares {} program headers, more than kiln accepts ({}); the file is malformed", what,
                      eh.e_phnum, kMaxPhnum);
  if (eh.e_phentsize < sizeof(Elf64_Phdr))
    return make_error("{} has program headers of {} bytes (expected at least {}); the file is malformed", what,
                      eh.e_phentsize, sizeof(Elf64_Phdr));
  // Both factors are bounded (phnum <= 4096, phentsize <= 65535): no overflow in 64 bits.
  uint64_t table_size = uint64_t{eh.e_phnum} * eh.e_phentsize;
  if (eh.e_phoff > file_size || table_size > file_size - eh.e_phoff)
    return make_error("{}: program header table (offset {}, {} bytes) lies outside the {}-byte file; it is truncated "
                      "or malformed",
                      what, eh.e_phoff, table_size, file_size);
  KILN_ASSIGN_OR_RETURN(std::string table, read_at(eh.e_phoff, static_cast<size_t>(table_size)));
  for (size_t i = 0; i < eh.e_phnum; ++i) {
    auto ph = load<Elf64_Phdr>(table, i * eh.e_phentsize);
    if (ph.p_type != PT_INTERP) continue;
    if (ph.p_filesz == 0 || ph.p_filesz > kMaxInterpLen)
      return make_error("{}: PT_INTERP has size {} (expected 1..{}); the file is malformed", what, ph.p_filesz,
                        kMaxInterpLen);
    if (ph.p_offset > file_size || ph.p_filesz > file_size - ph.p_offset)
      return make_error("{}: PT_INTERP (offset {}, {} bytes) lies outside the {}-byte file", what, ph.p_offset,
                        ph.p_filesz, file_size);
    KILN_ASSIGN_OR_RETURN(std::string interp, read_at(ph.p_offset, static_cast<size_t>(ph.p_filesz)));
    // The string is NUL-terminated inside p_filesz; keep what precedes the first NUL.
    interp.resize(std::strlen(interp.c_str()));
    if (interp.empty()) return make_error("{}: PT_INTERP is an empty string; the file is malformed", what);
    return std::optional<std::string>(std::move(interp));
  }
  return std::optional<std::string>{};
}

}  // namespace

Result<std::optional<std::string>> elf_interpreter_from_bytes(std::string_view bytes, std::string_view what) {
  ReadAt read_at = [&](uint64_t offset, size_t len) -> Result<std::string> {
    if (offset > bytes.size() || len > bytes.size() - offset)
      return make_error("{} is truncated: needs bytes {}..{} but has {}", what, offset, offset + len, bytes.size());
    return std::string(bytes.substr(static_cast<size_t>(offset), len));
  };
  return parse(read_at, bytes.size(), what);
}

Result<std::optional<std::string>> elf_interpreter(const std::filesystem::path& path) {
  // O_NONBLOCK: a FIFO in place of an executable must give an error, not a hang.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return make_error("cannot open {}: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return make_error("cannot stat {}: {}", path.string(), std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error("{} is not a regular file, so not an ELF executable", path.string());
  }
  std::string what = path.string();
  ReadAt read_at = [&](uint64_t offset, size_t len) -> Result<std::string> {
    std::string buf(len, '\0');
    size_t done = 0;
    while (done < len) {
      ssize_t n = ::pread(fd, buf.data() + done, len - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return make_error("cannot read {}: {}", what, std::strerror(errno));
      if (n == 0) return make_error("{} is truncated (it shrank while being read?)", what);
      done += static_cast<size_t>(n);
    }
    return buf;
  };
  auto result = parse(read_at, static_cast<uint64_t>(st.st_size), what);
  ::close(fd);
  return result;
}

}  // namespace kiln::image
