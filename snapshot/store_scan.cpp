#include "snapshot/store_scan.h"

#include "snapshot/fsops.h"
#include "snapshot/layout.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>

namespace kiln::snapshot::scan {

bool starts_with(const std::string& s, std::string_view prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

bool is_real_dir(const std::filesystem::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> entry_names(const std::filesystem::path& dir, std::error_code& ec) {
  std::vector<std::string> names;
  std::filesystem::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> snapshot_names(const std::filesystem::path& root) {
  std::error_code ec;
  std::vector<std::string> out;
  for (auto& name : entry_names(root, ec))
    if (!starts_with(name, ".") && is_real_dir(root / name)) out.push_back(name);
  return out;
}

std::chrono::system_clock::time_point last_used(const std::filesystem::path& dir) {
  for (auto name : {layout::kLastUsedFile, layout::kMetadataFile})
    if (auto t = fsops::mtime(dir / name)) return *t;
  return fsops::mtime(dir).value_or(std::chrono::system_clock::time_point{});
}

Result<uint64_t> discard(const std::filesystem::path& root, const std::filesystem::path& dir,
                         const std::string& name) {
  uint64_t bytes = fsops::disk_usage(dir);
  KILN_ASSIGN_OR_RETURN(auto trash, fsops::move_to_trash(root, dir, name));
  fsops::remove_tree(trash);
  return bytes;
}

std::string leftover_reason(const std::string& name) {
  bool tmp = starts_with(name, layout::kTmpPrefix);
  bool flat = starts_with(name, layout::kFlatTmpPrefix);
  auto prefix = tmp ? layout::kTmpPrefix : flat ? layout::kFlatTmpPrefix : layout::kTrashPrefix;
  auto pid = fsops::owner_pid(name, prefix);
  // A live owner is still writing (tmp, flat) or deleting (trash) it.
  if (pid && fsops::pid_alive(*pid)) return "";
  std::string owner = pid ? fmt::format("process {} is gone", *pid) : std::string("unrecognized name");
  if (tmp) return fmt::format("unfinished bake ({})", owner);
  if (flat) return fmt::format("unfinished flat file ({})", owner);
  return fmt::format("leftover of a replaced or removed snapshot ({})", owner);
}

}  // namespace kiln::snapshot::scan
