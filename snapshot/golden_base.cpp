#include "snapshot/golden_base.h"

#include "common/fs.h"
#include "snapshot/layout.h"
#include "snapshot/metadata.h"

#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <system_error>
#include <tuple>

namespace kiln::snapshot {
namespace {

// Only the three fields the rule needs are read, with the same leniency as the
// rule's original: any metadata that carries them with the right types qualifies,
// whatever its format version, because the diff depends on the RAM layout they
// imply, not on how the rest of the file is written.
bool metadata_matches(const std::filesystem::path& dir, const std::string& image, uint32_t memory_mib,
                      const std::string& baked_by_version) {
  auto path = dir / layout::kMetadataFile;
  struct stat st {};
  // A FIFO would block the read; refuse anything that is not a plain file.
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  auto text = fs::read_file(path, kMaxMetadataBytes);
  if (!text) return false;
  auto doc = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return false;
  auto img = doc.find("image");
  auto mem = doc.find("memory_mib");
  auto ver = doc.find("baked_by_version");
  if (img == doc.end() || mem == doc.end() || ver == doc.end()) return false;
  return img->is_string() && img->get_ref<const std::string&>() == image &&  //
         mem->is_number_unsigned() && mem->get<uint64_t>() == memory_mib &&  //
         ver->is_string() && ver->get_ref<const std::string&>() == baked_by_version;
}

}  // namespace

std::optional<std::filesystem::path> find_golden_base(const std::filesystem::path& snapshots_dir,
                                                      const std::filesystem::path& fresh_dir,
                                                      const std::string& memory_file_name, const std::string& image,
                                                      uint32_t memory_mib, const std::string& baked_by_version) {
  struct stat fresh_dir_st {}, fresh_mem_st {};
  if (::stat(fresh_dir.c_str(), &fresh_dir_st) != 0) return std::nullopt;
  if (::stat((fresh_dir / memory_file_name).c_str(), &fresh_mem_st) != 0 || !S_ISREG(fresh_mem_st.st_mode))
    return std::nullopt;

  std::optional<std::filesystem::path> best;
  std::tuple<int64_t, int64_t> best_mtime{};
  std::string best_name;

  std::error_code ec;
  std::filesystem::directory_iterator it(snapshots_dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const auto& dir = it->path();
    std::string name = dir.filename().string();
    if (name.empty() || name[0] == '.') continue;
    struct stat dir_st {};
    if (::stat(dir.c_str(), &dir_st) != 0 || !S_ISDIR(dir_st.st_mode)) continue;
    if (dir_st.st_dev == fresh_dir_st.st_dev && dir_st.st_ino == fresh_dir_st.st_ino) continue;

    auto mem_path = dir / memory_file_name;
    struct stat mem_st {};
    if (::stat(mem_path.c_str(), &mem_st) != 0 || !S_ISREG(mem_st.st_mode)) continue;
    if (mem_st.st_size != fresh_mem_st.st_size) continue;
    if (!metadata_matches(dir, image, memory_mib, baked_by_version)) continue;

    std::tuple<int64_t, int64_t> mtime{mem_st.st_mtim.tv_sec, mem_st.st_mtim.tv_nsec};
    if (!best || mtime > best_mtime || (mtime == best_mtime && name < best_name)) {
      best = mem_path;
      best_mtime = mtime;
      best_name = name;
    }
  }
  return best;
}

}  // namespace kiln::snapshot
