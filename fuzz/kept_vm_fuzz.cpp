// Fuzzes what `kiln shell` reads back from a kept VM (runner/kept_vms.h): its
// kept.json (first byte even) and the share session saved in it, which a fresh
// FUSE session over a real directory resumes (first byte odd). Both are files on
// disk: untrusted. A record that parses must round-trip through to_json.
#include "runner/kept_vms.h"
#include "share/fuse_session.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string_view>

namespace {

const std::filesystem::path& share_root() {
  static const std::filesystem::path root = [] {
    auto dir = std::filesystem::temp_directory_path() / "kiln-kept-vm-fuzz";
    std::filesystem::create_directories(dir / "sub");
    return dir;
  }();
  return root;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto vm = kiln::runner::parse_kept(text);
    if (!vm) return 0;
    auto again = kiln::runner::parse_kept(kiln::runner::to_json(*vm));
    if (!again || again->test != vm->test || again->command.argv != vm->command.argv ||
        again->guest.disks.size() != vm->guest.disks.size())
      std::abort();
    return 0;
  }
  auto session = kiln::share::FuseSession::create({share_root()}, {64, 16});
  if (!session) std::abort();
  if (session->resume(text) && !session->initialized()) std::abort();
  if (session->node_count() > 64 || session->open_handle_count() > 16) std::abort();
  return 0;
}
