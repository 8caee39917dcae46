// Removing images from the store: `kiln images rm` (pins by name, then the blobs no
// remaining pin references: a blob another image uses stays) and the image part of
// `kiln snapshots gc` (the records moved tags left behind once no snapshot uses them,
// unreferenced blobs, temp files of killed pulls).
#pragma once

#include "common/result.h"
#include "image/oci/pins.h"

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace kiln::image {

struct ImageGcReport {
  struct Item {
    std::string name;  ///< a pin's reference, or a blob digest
    std::string why;
    uint64_t bytes = 0;
  };
  std::vector<Item> removed;
  std::vector<Item> kept;
  uint64_t bytes_freed = 0;
};

/// The pins `name` designates: a reference (parsed, matched by canonical form), a pin's
/// exact stored name, or a manifest digest ("sha256:<hex>", every pin of that image).
std::vector<Pin> find_pins(const std::filesystem::path& root, const std::string& name);

/// Bytes the store holds for `pin` (every blob of it that is present).
uint64_t pin_bytes(const std::filesystem::path& root, const Pin& pin);

/// Remove `pins`, then every blob no remaining pin references.
Result<ImageGcReport> remove_pins(const std::filesystem::path& root, const std::vector<Pin>& pins);

/// Remove the records moved tags left (Pin::replaced_by) whose manifest digest is not in
/// `in_use`, blobs no pin references, and temp files older than an hour. Pins of images
/// the user pulled are never removed here (that is `kiln images rm`).
Result<ImageGcReport> gc_images(const std::filesystem::path& root, const std::set<std::string>& in_use, bool dry_run);

}  // namespace kiln::image
