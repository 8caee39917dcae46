#include "snapshot/verify.h"

#include "common/digest.h"
#include "common/fs.h"
#include "snapshot/layout.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kiln::snapshot {

LookupResult unusable(std::string reason) {
  LookupResult r;
  r.status = LookupStatus::unusable;
  r.reason = std::move(reason);
  return r;
}

namespace {

// Which key fields differ, so "not for this key" says what changed (a new kernel, more memory...).
std::string differing_fields(const SnapshotKey& have, const SnapshotKey& want) {
  std::vector<std::string> d;
  if (have.image != want.image) d.emplace_back("image");
  if (have.image_digest != want.image_digest) d.emplace_back("image_digest");
  if (have.kernel_digest != want.kernel_digest) d.emplace_back("kernel_digest");
  if (have.initramfs_digest != want.initramfs_digest) d.emplace_back("initramfs_digest");
  if (have.memory_mib != want.memory_mib) d.emplace_back("memory_mib");
  if (have.vcpus != want.vcpus) d.emplace_back("vcpus");
  if (have.engine != want.engine) d.emplace_back("engine");
  if (have.baked_by_version != want.baked_by_version) d.emplace_back("baked_by_version");
  if (have.cmdline != want.cmdline) d.emplace_back("cmdline");
  return fmt::format("{}", fmt::join(d, ", "));
}

}  // namespace

// Size and type of one engine file; the digest is checked separately (it costs I/O).
std::optional<std::string> check_file(const std::filesystem::path& dir, const FileInfo& info) {
  auto path = dir / info.name;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    return fmt::format("{} is missing ({})", info.name, std::strerror(errno));
  // A symlink could point anywhere, including at a file that changes under a running VM.
  if (!S_ISREG(st.st_mode)) return fmt::format("{} is not a regular file", info.name);
  if (static_cast<uint64_t>(st.st_size) != info.size)
    return fmt::format("{} is {} bytes but metadata.json says {} (truncated or overwritten)", info.name,
                       st.st_size, info.size);
  return std::nullopt;
}

std::optional<std::string> check_digest(const std::filesystem::path& dir, const FileInfo& info, bool sparse) {
  auto path = dir / info.name;
  auto digest = sparse ? digest_sparse_file(path) : digest_file(path);
  if (!digest) return fmt::format("cannot read {}: {}", info.name, digest.error().message);
  if (*digest != info.digest)
    return fmt::format("{} does not match its digest in metadata.json (corrupted)", info.name);
  return std::nullopt;
}

Result<Metadata> read_metadata(const std::filesystem::path& dir) {
  auto meta_path = dir / layout::kMetadataFile;
  struct stat st {};
  if (::lstat(meta_path.c_str(), &st) != 0) {
    if (errno == ENOENT) return make_error("metadata.json is missing (a stray directory, not written by kiln's publish)");
    return make_error("cannot access metadata.json: {}", std::strerror(errno));
  }
  // Reading a FIFO or device would hang or never end; a symlink could point anywhere.
  if (!S_ISREG(st.st_mode)) return make_error("metadata.json is not a regular file");
  auto text = fs::read_file(meta_path, kMaxMetadataBytes);
  if (!text) return make_error("metadata.json: {}", text.error().message);
  auto meta = parse_metadata(*text);
  if (!meta) return make_error("metadata.json: {}", meta.error().message);
  return meta;
}

LookupResult verify_any(const std::filesystem::path& root, const std::string& id, VerifyLevel level) {
  auto meta = read_metadata(root / id);
  if (meta && meta->layer) return verify_layer(root, id, nullptr, level);
  return verify_snapshot(root / id, id, nullptr, level);
}

LookupResult verify_snapshot(const std::filesystem::path& dir, const std::string& id, const SnapshotKey* want,
                             VerifyLevel level) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return LookupResult{};
    return unusable(fmt::format("cannot access the snapshot directory: {}", std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) return unusable("the snapshot path is not a directory");

  auto meta = read_metadata(dir);
  if (!meta) return unusable(meta.error().message);
  if (meta->layer)
    return unusable(fmt::format("it is a {} layer over {}, not a golden snapshot", meta->layer->kind, *meta->parent));

  if (want != nullptr && !(meta->key == *want))
    return unusable(fmt::format("metadata.json describes a different snapshot (differs in: {})",
                                differing_fields(meta->key, *want)));
  if (meta->key.id() != id)
    return unusable(fmt::format("metadata.json describes snapshot {}, not the directory's {}", meta->key.id(), id));
  if (meta->state.name != layout::kStateFile || meta->memory.name != layout::kMemoryFile)
    return unusable(fmt::format("metadata.json names files '{}' and '{}', expected '{}' and '{}'", meta->state.name,
                                meta->memory.name, layout::kStateFile, layout::kMemoryFile));

  for (const FileInfo* f : {&meta->state, &meta->memory})
    if (auto problem = check_file(dir, *f)) return unusable(*problem);
  if (auto problem = check_digest(dir, meta->state, /*sparse=*/false)) return unusable(*problem);
  if (level == VerifyLevel::full)
    if (auto problem = check_digest(dir, meta->memory, /*sparse=*/true)) return unusable(*problem);

  LookupResult r;
  r.status = LookupStatus::found;
  r.snapshot = Snapshot{dir, std::move(*meta)};
  return r;
}

}  // namespace kiln::snapshot
