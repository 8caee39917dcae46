// Fuzzes the parsers of files kiln reads from a kernel tree and from payloads:
// modules.dep, modules.builtin, bzImage headers and ELF program headers.
#include "image/bzimage.h"
#include "image/elf_interp.h"
#include "image/module_deps.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto table = kiln::image::parse_modules_dep(bytes);
  auto builtin = kiln::image::parse_modules_builtin(bytes);
  (void)kiln::image::resolve_load_order(table, builtin, {"virtio_mmio", "virtio_console"}, "fuzz");
  (void)kiln::image::bzimage_version_from_bytes(bytes, "fuzz");
  (void)kiln::image::elf_interpreter_from_bytes(bytes, "fuzz");
  return 0;
}
