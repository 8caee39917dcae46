// Finding qemu-system-x86_64 and its version (part of every snapshot key).
#pragma once

#include "common/result.h"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::vmm::qemu {

/// $KILN_QEMU if set, else qemu-system-x86_64 on $PATH, as an absolute path.
Result<std::filesystem::path> find_qemu_binary();

/// The version of `binary` ("7.2.22"). Running `qemu --version` costs ~20 ms, too much
/// for every `kiln run`, so the answer is cached under cache_root()/host, keyed by the
/// binary's path, size and mtime (an upgrade changes them and refreshes the entry).
Result<std::string> qemu_version(const std::filesystem::path& binary);

/// "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)" -> "7.2.22".
std::optional<std::string> parse_qemu_version(std::string_view version_output);

}  // namespace kiln::vmm::qemu
