// One layer tarball opened for reading with libarchive: plain tar, or tar compressed
// with gzip or zstd (the OCI layer media types), nothing else. Both passes over the
// layers (layer_index, flatten) read through this, so they see the same members.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <string>
#include <string_view>

struct archive;
struct archive_entry;

namespace kiln::rootfs {

class LayerReader {
 public:
  /// Read the blob at `path`; `name` (the layer digest) names it in every error.
  static Result<LayerReader> open_file(const std::filesystem::path& path, std::string name);
  /// Read `bytes` (kept alive by the caller), e.g. a fuzz input.
  static Result<LayerReader> open_memory(std::string_view bytes, std::string name);

  LayerReader(LayerReader&& other) noexcept;
  LayerReader& operator=(LayerReader&&) = delete;
  LayerReader(const LayerReader&) = delete;
  LayerReader& operator=(const LayerReader&) = delete;
  ~LayerReader();

  /// The next member's header, or nullptr at the end of the layer. The entry belongs
  /// to the reader and is valid until the next call.
  Result<archive_entry*> next();
  /// Read up to `size` bytes of the current member's data; 0 at its end.
  Result<size_t> read_data(void* buf, size_t size);

  archive* handle() const { return a_; }
  const std::string& name() const { return name_; }

 private:
  LayerReader(archive* a, std::string name) : a_(a), name_(std::move(name)) {}
  Error failure(std::string_view doing) const;
  archive* a_ = nullptr;
  std::string name_;
};

}  // namespace kiln::rootfs
