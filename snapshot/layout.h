// Where things live in the snapshot store. One place, so the store, gc and the
// golden-base rule agree on names.
//
//   <root>/<key id>/metadata.json      a published snapshot (never partially visible)
//   <root>/<key id>/state.bin          engine device/CPU state
//   <root>/<key id>/memory.ram         guest RAM (sparse)
//   <root>/<key id>/last-used          empty stamp; its mtime is the last restore
//   <root>/.locks/<key id>.lock        flock serializing bakes of one key
//   <root>/.tmp-<id>-<pid>-XXXXXX      a bake in progress by <pid>
//   <root>/.trash-<id>-<pid>-XXXXXX    a replaced or removed snapshot being deleted
//
// Names starting with '.' are never snapshots; list, rm and golden-base selection skip them.
#pragma once

#include <string_view>

namespace kiln::snapshot::layout {

inline constexpr std::string_view kMetadataFile = "metadata.json";
inline constexpr std::string_view kStateFile = "state.bin";
inline constexpr std::string_view kMemoryFile = "memory.ram";
inline constexpr std::string_view kLastUsedFile = "last-used";
inline constexpr std::string_view kLocksDir = ".locks";
inline constexpr std::string_view kLockSuffix = ".lock";
inline constexpr std::string_view kTmpPrefix = ".tmp-";
inline constexpr std::string_view kTrashPrefix = ".trash-";

}  // namespace kiln::snapshot::layout
