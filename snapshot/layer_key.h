// What a snapshot layer is keyed by: a layer is a snapshot restored from a parent
// (a golden or another layer), changed by the runner (a payload placed, a setup
// command run) and saved again as a diff against that parent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::snapshot {

/// Longest chain of layers over one golden (golden -> L1 -> ... -> L4). Each level
/// costs a lookup more digests and the kvm engine one more overlay to map; fixture
/// over payload over fixture is already three.
inline constexpr uint32_t kMaxLayerDepth = 4;

/// The kinds of layer the runner makes.
inline constexpr std::string_view kLayerKindPayload = "payload";
inline constexpr std::string_view kLayerKindFixture = "fixture";

struct LayerKey {
  std::string parent_id;       ///< store id of the snapshot it is restored from (golden or layer)
  std::string kind;            ///< "payload" | "fixture"
  std::string content_digest;  ///< what the layer adds (computed by the runner)
  std::string label;           ///< human text for `kiln snapshots list`; not part of id()

  /// Stable hex id: the layer's directory name in the store. Derived from parent_id,
  /// kind and content_digest, so a layer over a rebaked parent id is a different layer.
  std::string id() const;
  bool operator==(const LayerKey&) const = default;
};

}  // namespace kiln::snapshot
