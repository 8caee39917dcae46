#include "image/rootfs/flatten.h"

#include "image/rootfs/layer_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <optional>
#include <utility>

namespace kiln::rootfs {
namespace {

constexpr size_t kCopyBytes = 1 << 20;

// The xattr namespaces a squashfs inode can hold (squashfs-tools-ng refuses others).
bool squashfs_stores(std::string_view name) {
  for (std::string_view prefix : {"user.", "trusted.", "security."})
    if (name.substr(0, prefix.size()) == prefix) return true;
  return false;
}

// The tar writer, its output going to a TarSink; the sink's own error is kept so the
// caller reports it rather than libarchive's "write failed".
class TarOut {
 public:
  static Result<std::unique_ptr<TarOut>> open(const TarSink& sink) {
    std::unique_ptr<TarOut> out(new TarOut(sink));
    archive* a = out->a_;
    if (a == nullptr) return make_error("out of memory starting the flattened tar stream");
    // pax keeps every attribute tar can carry; xattrs as SCHILY.xattr (what tar2sqfs reads).
    if (archive_write_set_format_pax(a) != ARCHIVE_OK || archive_write_set_options(a, "xattrheader=SCHILY") != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open(a, out.get(), nullptr, &TarOut::write_cb, nullptr) != ARCHIVE_OK)
      return out->failure("cannot start the flattened tar stream");
    return out;
  }
  ~TarOut() { archive_write_free(a_); }
  TarOut(const TarOut&) = delete;
  TarOut& operator=(const TarOut&) = delete;

  Result<void> header(archive_entry* e, const std::string& what) {
    int r = archive_write_header(a_, e);
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return failure("cannot write " + what);
    return {};
  }
  Result<void> data(const void* buf, size_t n, const std::string& what) {
    if (archive_write_data(a_, buf, n) != static_cast<la_ssize_t>(n)) return failure("cannot write the data of " + what);
    return {};
  }
  Result<void> close() {
    if (archive_write_close(a_) != ARCHIVE_OK) return failure("cannot finish the flattened tar stream");
    return {};
  }

 private:
  explicit TarOut(TarSink sink) : a_(archive_write_new()), sink_(std::move(sink)) {}
  static la_ssize_t write_cb(archive* a, void* self_ptr, const void* buf, size_t n) {
    auto* self = static_cast<TarOut*>(self_ptr);
    auto r = self->sink_(std::string_view(static_cast<const char*>(buf), n));
    if (r) return static_cast<la_ssize_t>(n);
    self->sink_error_ = r.take_error();
    archive_set_error(a, EIO, "the flattened tar stream's reader failed");
    return -1;
  }
  Error failure(const std::string& doing) {
    if (sink_error_) return *sink_error_;
    const char* m = archive_error_string(a_);
    return make_error("{}: {}", doing, m != nullptr ? m : "unknown libarchive error");
  }
  archive* a_;
  TarSink sink_;
  std::optional<Error> sink_error_;
};

// Keep only what the image can hold: no sparse map (data is written in full), no
// ACLs or file flags, xattrs in squashfs's namespaces. Returns how many were dropped.
uint64_t strip_unstorable(archive_entry* e) {
  archive_entry_sparse_clear(e);
  archive_entry_set_fflags(e, 0, 0);
  uint64_t dropped = archive_entry_acl_count(e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS | ARCHIVE_ENTRY_ACL_TYPE_DEFAULT) > 0 ? 1 : 0;
  archive_entry_acl_clear(e);
  struct Xattr {
    std::string name;
    std::string value;
  };
  std::vector<Xattr> keep;
  archive_entry_xattr_reset(e);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (name != nullptr && squashfs_stores(name)) keep.push_back({name, std::string(static_cast<const char*>(value), size)});
    else ++dropped;
  }
  archive_entry_xattr_clear(e);
  for (const auto& x : keep) archive_entry_xattr_add_entry(e, x.name.c_str(), x.value.data(), x.value.size());
  return dropped;
}

NodeKind member_kind(archive_entry* e) {
  switch (archive_entry_filetype(e)) {
    case AE_IFDIR: return NodeKind::directory;
    case AE_IFREG: return NodeKind::file;
    case AE_IFLNK: return NodeKind::symlink;
    default: return NodeKind::special;
  }
}

std::string out_name(const std::string& path) { return path.empty() ? "./" : path; }

class Flattener {
 public:
  Flattener(TarOut& out, FlattenResult& result) : out_(out), result_(result), buf_(kCopyBytes) {}

  Result<void> layer(const image::LayerBlob& blob, const std::vector<Emission>& emissions) {
    KILN_ASSIGN_OR_RETURN(LayerReader reader, LayerReader::open_file(blob.path, blob.digest));
    uint64_t ordinal = 0;
    for (const Emission& em : emissions) {
      archive_entry* e = nullptr;
      for (;; ++ordinal) {
        KILN_ASSIGN_OR_RETURN(e, reader.next());
        if (e == nullptr)
          return make_error("layer {}: it ended before member #{} it had in the first pass; the blob changed "
                            "while kiln read it (pull the image again)", blob.digest, em.ordinal);
        if (ordinal == em.ordinal) break;
      }
      ++ordinal;
      KILN_TRY(member(reader, e, em));
    }
    return {};
  }

 private:
  Result<void> member(LayerReader& reader, archive_entry* e, const Emission& em) {
    uint64_t size = em.kind == NodeKind::file ? static_cast<uint64_t>(archive_entry_size(e)) : 0;
    if (member_kind(e) != em.kind || archive_entry_hardlink(e) != nullptr || size != em.size)
      return make_error("layer {}: member #{} ({:?}) is not what it was in the first pass; the blob changed "
                        "while kiln read it (pull the image again)", reader.name(), em.ordinal, em.path);
    result_.dropped_xattrs += strip_unstorable(e);
    archive_entry_set_pathname(e, out_name(em.path).c_str());
    if (em.kind != NodeKind::file) archive_entry_set_size(e, 0);
    KILN_TRY(out_.header(e, em.path));
    if (em.kind == NodeKind::file) KILN_TRY(copy_data(reader, em));
    for (const std::string& link : em.links) {
      std::unique_ptr<archive_entry, decltype(&archive_entry_free)> l(archive_entry_clone(e), archive_entry_free);
      if (!l) return make_error("out of memory writing the hard link {:?}", link);
      archive_entry_set_pathname(l.get(), link.c_str());
      archive_entry_set_hardlink(l.get(), em.path.c_str());
      archive_entry_set_size(l.get(), 0);
      KILN_TRY(out_.header(l.get(), link));
    }
    return {};
  }

  Result<void> copy_data(LayerReader& reader, const Emission& em) {
    uint64_t copied = 0;
    for (;;) {
      KILN_ASSIGN_OR_RETURN(size_t n, reader.read_data(buf_.data(), buf_.size()));
      if (n == 0) break;
      copied += n;
      if (copied > em.size) break;
      KILN_TRY(out_.data(buf_.data(), n, em.path));
    }
    if (copied != em.size)
      return make_error("layer {}: {:?} has {} bytes of data, its header says {}; the blob is damaged (pull the "
                        "image again)", reader.name(), em.path, copied, em.size);
    result_.data_bytes += copied;
    return {};
  }

  TarOut& out_;
  FlattenResult& result_;
  std::vector<char> buf_;
};

}  // namespace

Result<FlattenResult> write_flat_tar(const std::vector<image::LayerBlob>& layers, const FlatPlan& plan,
                                     const TarSink& sink, const std::function<void(const std::string&)>& progress) {
  if (plan.layers.size() != layers.size())
    return make_error("internal: a flattening plan for {} layers used with {}", plan.layers.size(), layers.size());
  KILN_ASSIGN_OR_RETURN(auto out, TarOut::open(sink));
  FlattenResult result;
  Flattener flattener(*out, result);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (progress) progress(fmt::format("flattening layer {}/{} ({})", i + 1, layers.size(), layers[i].digest));
    KILN_TRY(flattener.layer(layers[i], plan.layers[i]));
  }
  KILN_TRY(out->close());
  return result;
}

}  // namespace kiln::rootfs
