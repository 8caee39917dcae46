// Where things live in the snapshot store. One place, so the store, gc and the
// golden-base rule agree on names.
//
//   <root>/<key id>/metadata.json      a published snapshot (never partially visible)
//   <root>/<key id>/state.bin          engine device/CPU state
//   <root>/<key id>/memory.ram         guest RAM (sparse)
//   <root>/<key id>/last-used          empty stamp; its mtime is the last restore
//   <root>/<key id>/memory.ram.stamp   "memory.ram matched its digest in boot B" (digest_stamp.h)
//   <root>/<layer id>/metadata.json    a layer: parent id, parent digest, depth
//   <root>/<layer id>/state.bin        engine state saved after the layer's change
//   <root>/<layer id>/memory.diff      the pages that differ from the parent's content (dense)
//   <root>/<layer id>/memory.index     where those pages go (binary, diff_index.h)
//   <root>/<layer id>/memory.flat      derived: the complete RAM, for engines without overlays
//   <root>/<layer id>/memory.flat.stamp  what memory.flat was built from, and its digest
//   <root>/<layer id>/.flat-<id>-<pid>-<random>  a flat file being built by <pid>
//   <root>/.locks/<key id>.lock        flock serializing bakes of one key (and gc of it)
//   <root>/.locks/<id>.flat.lock       flock serializing builds and eviction of one flat file
//   <root>/.tmp-<id>-<pid>-<random>    a bake in progress by <pid>
//   <root>/.trash-<id>-<pid>-<random>  a replaced or removed snapshot being deleted
//   <dir>/.<name>.tmp-<random>         <dir>/<name> being written (fs::write_file_atomic)
//
// <random> is 16 hex digits and every such entry is created exclusively (common/temp_file.h).
// Names starting with '.' are never snapshots; list, rm and golden-base selection skip them.
#pragma once

#include <string_view>

namespace kiln::snapshot::layout {

inline constexpr std::string_view kMetadataFile = "metadata.json";
inline constexpr std::string_view kStateFile = "state.bin";
inline constexpr std::string_view kMemoryFile = "memory.ram";
inline constexpr std::string_view kLastUsedFile = "last-used";
inline constexpr std::string_view kMemoryStampFile = "memory.ram.stamp";
inline constexpr std::string_view kDiffFile = "memory.diff";
inline constexpr std::string_view kIndexFile = "memory.index";
inline constexpr std::string_view kFlatFile = "memory.flat";
inline constexpr std::string_view kFlatStampFile = "memory.flat.stamp";
inline constexpr std::string_view kFlatTmpPrefix = ".flat-";
inline constexpr std::string_view kFlatLockSuffix = ".flat.lock";
inline constexpr std::string_view kLocksDir = ".locks";
inline constexpr std::string_view kLockSuffix = ".lock";
inline constexpr std::string_view kTmpPrefix = ".tmp-";
inline constexpr std::string_view kTrashPrefix = ".trash-";

}  // namespace kiln::snapshot::layout
