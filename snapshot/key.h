// What a snapshot is keyed by: two runs with equal keys may share a snapshot.
#pragma once

#include <cstdint>
#include <string>

namespace kiln::snapshot {

struct SnapshotKey {
  std::string image;             ///< image reference ("default")
  std::string image_digest;      ///< digest of the guest root filesystem / initramfs contents
  std::string kernel_digest;
  std::string initramfs_digest;
  uint32_t memory_mib = 0;
  uint32_t vcpus = 0;
  std::string engine;            ///< engine identity, e.g. "qemu-7.2.0/tcg"
  std::string baked_by_version;  ///< kiln version that baked it
  std::string cmdline;           ///< kernel command line

  /// Stable hex id: the snapshot's directory name in the store.
  std::string id() const;
  bool operator==(const SnapshotKey&) const = default;
};

}  // namespace kiln::snapshot
