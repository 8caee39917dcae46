#include "image/rootfs/layer_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <utility>

namespace kiln::rootfs {
namespace {

// libarchive's read block: big enough that a multi-GiB layer is not a million reads.
constexpr size_t kBlockBytes = 1 << 20;

archive* new_reader() {
  archive* a = archive_read_new();
  if (a == nullptr) return nullptr;
  archive_read_support_filter_gzip(a);
  archive_read_support_filter_zstd(a);
  archive_read_support_format_tar(a);
  archive_read_support_format_empty(a);  // a layer with no members at all is valid
  return a;
}

std::string libarchive_message(archive* a) {
  const char* m = archive_error_string(a);
  return m != nullptr ? m : "unknown libarchive error";
}

}  // namespace

Result<LayerReader> LayerReader::open_file(const std::filesystem::path& path, std::string name) {
  archive* a = new_reader();
  if (a == nullptr) return make_error("layer {}: out of memory opening it", name);
  LayerReader r(a, std::move(name));
  if (archive_read_open_filename(a, path.c_str(), kBlockBytes) != ARCHIVE_OK)
    return r.failure(fmt::format("cannot open {}", path.string()));
  return r;
}

Result<LayerReader> LayerReader::open_memory(std::string_view bytes, std::string name) {
  archive* a = new_reader();
  if (a == nullptr) return make_error("layer {}: out of memory opening it", name);
  LayerReader r(a, std::move(name));
  if (archive_read_open_memory(a, bytes.data(), bytes.size()) != ARCHIVE_OK) return r.failure("cannot open it");
  return r;
}

LayerReader::LayerReader(LayerReader&& other) noexcept
    : a_(std::exchange(other.a_, nullptr)), name_(std::move(other.name_)) {}

LayerReader::~LayerReader() {
  if (a_ != nullptr) archive_read_free(a_);
}

Error LayerReader::failure(std::string_view doing) const {
  return make_error("layer {}: {}: {} (the blob is not a tar archive, or is compressed with something other "
                    "than gzip or zstd, or is damaged: pull the image again)",
                    name_, doing, libarchive_message(a_));
}

Result<archive_entry*> LayerReader::next() {
  archive_entry* e = nullptr;
  int r = archive_read_next_header(a_, &e);
  if (r == ARCHIVE_EOF) return static_cast<archive_entry*>(nullptr);
  // ARCHIVE_WARN is a header libarchive could read but with something odd (e.g. an
  // unknown pax key): the member is still usable.
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return failure("cannot read the next member");
  return e;
}

Result<size_t> LayerReader::read_data(void* buf, size_t size) {
  la_ssize_t n = archive_read_data(a_, buf, size);
  if (n < 0) return failure("cannot read a member's data");
  return static_cast<size_t>(n);
}

}  // namespace kiln::rootfs
