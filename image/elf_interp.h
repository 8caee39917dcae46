// Which dynamic loader (PT_INTERP) an ELF executable asks for, if any.
// The initramfs builder uses it to refuse a dynamic PID 1 / busybox; the runner
// uses it to find the host loader that resolves a payload's libraries.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::image {

/// The PT_INTERP path of an ELF64 little-endian file: nullopt for a static
/// executable, an error for anything that is not such an ELF file (or is malformed).
/// Reads only the ELF header, the program headers and the interpreter string.
Result<std::optional<std::string>> elf_interpreter(const std::filesystem::path& path);

/// The same, on the bytes of a file's beginning (pure; for tests and fuzzing).
/// `what` names the file in error messages. Headers past `bytes` are "truncated".
Result<std::optional<std::string>> elf_interpreter_from_bytes(std::string_view bytes, std::string_view what);

}  // namespace kiln::image
