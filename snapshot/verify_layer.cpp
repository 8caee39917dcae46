// Verifying a layer and the chain under it: the layer's small files by digest on every
// lookup, its pages whenever their file's identity changed (digest_memo.h), its parent by
// recorded digest, and the root golden's big memory.ram once per boot (digest_stamp.h).
#include "common/digest_memo.h"
#include "snapshot/digest_stamp.h"
#include "snapshot/layer_chain.h"
#include "snapshot/layout.h"
#include "snapshot/verify.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kiln::snapshot {
namespace {


std::string differing_fields(const LayerKey& have, const LayerKey& want) {
  std::vector<std::string> d;
  if (have.parent_id != want.parent_id) d.emplace_back("parent_id");
  if (have.kind != want.kind) d.emplace_back("kind");
  if (have.content_digest != want.content_digest) d.emplace_back("content_digest");
  return fmt::format("{}", fmt::join(d, ", "));
}

// Is the verified parent `p` still what the layer `meta` was diffed against?
std::optional<std::string> check_parent(const Snapshot& p, const Metadata& meta, VerifyLevel level) {
  const LayerInfo& l = *meta.layer;
  std::string pid = short_id(p.id());
  if (p.depth() + 1 != l.depth)
    return fmt::format("its base {} changed: it is at depth {}, the layer was made over depth {}", pid, p.depth(),
                       l.depth - 1);
  if (p.meta.key.baked_by_version != meta.key.baked_by_version)
    return fmt::format("its base {} was rebaked by kiln {} (the layer was made over kiln {})", pid,
                       p.meta.key.baked_by_version, meta.key.baked_by_version);
  if (!(p.meta.key == meta.key))
    return fmt::format("its base {} is for another guest now (kernel, image, engine or memory changed)", pid);
  if (p.content_digest() != l.parent_digest)
    return fmt::format("its base {} changed since the layer was made (digest differs)", pid);
  uint64_t parent_ram = p.is_layer() ? p.meta.layer->memory_size : p.meta.memory.size;
  if (parent_ram != l.memory_size)
    return fmt::format("its base {} has {} bytes of RAM, the layer {}", pid, parent_ram, l.memory_size);
  if (!p.is_layer()) {
    auto problem = check_digest_once(p.dir / p.meta.memory.name, p.meta.memory.digest,
                                     p.dir / layout::kMemoryStampFile, "", level == VerifyLevel::full);
    if (problem) return fmt::format("its base {}: {}", pid, *problem);
  }
  return std::nullopt;
}

std::optional<std::string> check_pages_digest(const std::filesystem::path& dir, const FileInfo& pages,
                                              VerifyLevel level) {
  if (level == VerifyLevel::full) return check_digest(dir, pages, /*sparse=*/false);
  auto digest = memo_digest_file(dir / pages.name);
  if (!digest) return fmt::format("cannot read {}: {}", pages.name, digest.error().message);
  if (*digest != pages.digest) return fmt::format("{} does not match its digest in metadata.json (corrupted)", pages.name);
  return std::nullopt;
}

// `at`: where the layer's own files are when not at <root>/<id> (an import not yet in place).
LookupResult verify_chain(const std::filesystem::path& root, const std::string& id, const LayerKey* want,
                          VerifyLevel level, uint32_t hops, const std::filesystem::path* at = nullptr) {
  // Bounded recursion, whatever the files claim: a forged parent cycle ends here.
  if (hops >= kMaxLayerDepth)
    return unusable(fmt::format("its chain of bases is deeper than the maximum of {}", kMaxLayerDepth));
  auto dir = at ? *at : root / id;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return LookupResult{};
    return unusable(fmt::format("cannot access the layer directory: {}", std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) return unusable("the layer path is not a directory");
  auto meta = read_metadata(dir);
  if (!meta) return unusable(meta.error().message);
  if (!meta->layer) return unusable("it is a golden snapshot, not a layer");
  LayerKey have = *meta->layer_key();
  if (want && !(have.parent_id == want->parent_id && have.kind == want->kind &&
                have.content_digest == want->content_digest))
    return unusable(fmt::format("metadata.json describes a different layer (differs in: {})",
                                differing_fields(have, *want)));
  if (have.id() != id)
    return unusable(fmt::format("metadata.json describes layer {}, not the directory's {}", have.id(), id));
  LayerInfo& l = *meta->layer;
  if (meta->state.name != layout::kStateFile || meta->memory.name != layout::kDiffFile ||
      l.index.name != layout::kIndexFile)
    return unusable(fmt::format("metadata.json names files '{}', '{}' and '{}', expected '{}', '{}' and '{}'",
                                meta->state.name, meta->memory.name, l.index.name, layout::kStateFile,
                                layout::kDiffFile, layout::kIndexFile));
  for (const FileInfo* f : {&meta->state, &meta->memory, &l.index})
    if (auto problem = check_file(dir, *f)) return unusable(*problem);
  // Every restore maps these: the state and index are small and digested every time; the
  // pages (tens of MiB for a test executable's layer) when the file is not the one last
  // digested (common/digest_memo.h: identity, with the racy-timestamp guard). `full` reads all.
  for (const FileInfo* f : {&meta->state, &l.index})
    if (auto problem = check_digest(dir, *f, /*sparse=*/false)) return unusable(*problem);
  if (auto problem = check_pages_digest(dir, meta->memory, level)) return unusable(*problem);
  Snapshot self{dir, std::move(*meta)};
  if (auto index = read_diff_index(self); !index) return unusable(index.error().message);

  const std::string& parent_id = *self.meta.parent;
  if (parent_id == id) return unusable("it names itself as its base");
  LookupResult p = self.meta.layer->depth == 1 ? verify_snapshot(root / parent_id, parent_id, nullptr, VerifyLevel::quick)
                                : verify_chain(root, parent_id, nullptr, level, hops + 1);
  if (p.status == LookupStatus::missing) return unusable(fmt::format("its base {} vanished", short_id(parent_id)));
  if (p.status == LookupStatus::unusable)
    return unusable(fmt::format("its base {} is unusable: {}", short_id(parent_id), p.reason));
  if (auto problem = check_parent(*p.snapshot, self.meta, level)) return unusable(*problem);

  LookupResult r;
  r.status = LookupStatus::found;
  r.snapshot = std::move(self);
  return r;
}

}  // namespace

LookupResult verify_layer(const std::filesystem::path& root, const std::string& id, const LayerKey* want,
                          VerifyLevel level) {
  return verify_chain(root, id, want, level, 0);
}

LookupResult verify_layer_at(const std::filesystem::path& dir, const std::filesystem::path& root,
                             const std::string& id, VerifyLevel level) {
  return verify_chain(root, id, nullptr, level, 0, &dir);
}

}  // namespace kiln::snapshot
