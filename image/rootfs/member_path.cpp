#include "image/rootfs/member_path.h"

namespace kiln::rootfs {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

std::string_view base_of(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string join(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out(dir);
  out += '/';
  out += name;
  return out;
}

}  // namespace

Result<std::string> normalize_member_path(std::string_view raw) {
  if (raw.empty()) return make_error("an empty member name");
  if (raw.size() > kMaxPathBytes) return make_error("a member name of {} bytes (the limit is {})", raw.size(), kMaxPathBytes);
  std::string out;
  out.reserve(raw.size());
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t slash = raw.find('/', pos);
    if (slash == std::string_view::npos) slash = raw.size();
    std::string_view part = raw.substr(pos, slash - pos);
    pos = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") return make_error("a '..' component, which could reach outside the image root");
    if (part.size() > kMaxNameBytes)
      return make_error("a name of {} bytes (the limit is {})", part.size(), kMaxNameBytes);
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

std::string_view parent_of(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

Result<Whiteout> classify_whiteout(const std::string& path) {
  std::string_view base = base_of(path);
  if (base.substr(0, kWhiteoutPrefix.size()) != kWhiteoutPrefix) return Whiteout{};
  std::string_view dir = parent_of(path);
  if (base == kOpaqueMarker) return Whiteout{Whiteout::Kind::opaque, std::string(dir)};
  if (base.substr(0, kMetaPrefix.size()) == kMetaPrefix) return Whiteout{Whiteout::Kind::ignore, {}};
  std::string_view name = base.substr(kWhiteoutPrefix.size());
  if (name.empty() || name == "." || name == "..")
    return make_error("a whiteout '{}' naming '{}', which is not a file", base, name);
  return Whiteout{Whiteout::Kind::remove, join(dir, name)};
}

}  // namespace kiln::rootfs
