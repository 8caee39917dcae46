// Image pins: what a reference resolved to when it was pulled, one JSON file per
// canonical reference in `<root>/refs/`. A pin makes a later run independent of the
// source (a digest reference never asks the registry again; a tag is re-checked and a
// move is reported) and tells `kiln images rm` and gc which blobs an image holds.
#pragma once

#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kiln::image {

struct PinnedBlob {
  std::string digest;
  uint64_t size = 0;
  std::string media_type;
  bool operator==(const PinnedBlob&) const = default;
};

struct Pin {
  std::string canonical;        ///< the reference it is stored under (Reference::canonical())
  std::string top_digest;       ///< what the tag/digest named: an index or the manifest itself
  std::string manifest_digest;  ///< the linux/amd64 image manifest: the image's identity
  uint64_t manifest_size = 0;
  PinnedBlob config;
  std::vector<PinnedBlob> layers;  ///< base first
  int64_t pulled_at = 0;           ///< unix seconds of the pull that wrote it
  std::string source;              ///< BlobSource::describe() of where it came from
  /// Set on the record a moved tag left behind ("<name>@<old manifest digest>"): kept
  /// while a snapshot uses that image, removed by `kiln snapshots gc` after.
  std::string replaced_by;

  /// Every blob the image holds in the store: manifest, config, layers.
  std::vector<PinnedBlob> blobs() const;
  bool operator==(const Pin&) const = default;
};

std::string pin_to_json(const Pin& pin);
/// Parse a pin file (untrusted: bounded, every digest checked).
Result<Pin> parse_pin(std::string_view text);

class PinStore {
 public:
  /// Pins live in `<root>/refs/`.
  explicit PinStore(std::filesystem::path root);

  /// The pin for `canonical`; nullopt if there is none. A damaged pin file is an error
  /// of kind `corrupt`.
  Result<std::optional<Pin>> read(const std::string& canonical) const;
  /// Write (replace) the pin for pin.canonical, atomically.
  Result<void> write(const Pin& pin) const;
  /// Remove the pin for `canonical`; false if there was none.
  Result<bool> remove(const std::string& canonical) const;

  struct Listed {
    std::filesystem::path file;
    std::optional<Pin> pin;  ///< nullopt: damaged (error says why)
    std::string error;
  };
  std::vector<Listed> list() const;

  /// The file name a canonical reference is stored under: every byte outside
  /// [a-z0-9._-] escaped as %XX; a long name is cut and completed by a hash.
  static std::string file_name(const std::string& canonical);

 private:
  std::filesystem::path dir_;
};

}  // namespace kiln::image
