// kiln run's outputs (KILN_OUTPUT_DIR, like Bazel's TEST_UNDECLARED_OUTPUTS_DIR): each
// run's command gets an empty directory in the guest; after it ends, pass or fail,
// what it left there comes back into the host's --output-dir, which kiln empties at
// the start of every run. docs/outputs.md.
//
// The guest is untrusted: its tar stream is bounded (the cap on contents, the agent's
// entry limit, a bound on the stream), and only regular files, directories and symlinks
// are written, each at a checked relative path, never through a symlink — a symlink the
// test left is written as a symlink, its target never followed.
#pragma once

#include "common/clock.h"
#include "common/result.h"
#include "runner/agent_client.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace kiln::runner {

using proto::kGuestOutputDir;
/// The default cap on the bytes of file contents one run brings back.
inline constexpr uint64_t kDefaultOutputCapMiB = 100;
/// The file that marks a directory kiln made for outputs (and so may empty).
inline constexpr const char* kOutputDirMarker = ".kiln-outputs";

struct OutputsSpec {
  std::filesystem::path dir;  ///< absolute host directory, prepared by prepare_output_dir
  uint64_t cap_bytes = kDefaultOutputCapMiB << 20;
};

/// Make `dir` an empty outputs directory: created with its parents when missing, emptied
/// when kiln made it (kOutputDirMarker in it), refused when it holds anything else — kiln
/// never empties a directory that is not its own.
Result<void> prepare_output_dir(const std::filesystem::path& dir);

struct OutputsReport {
  uint64_t bytes = 0;      ///< file contents written
  uint32_t entries = 0;    ///< files, directories and symlinks written
  uint32_t left_out = 0;   ///< entries the guest or the host left out
  std::string note;        ///< which, and why (escaped guest text)
};

/// Write the ustar stream `tar` (untrusted) into `dir`: regular files, directories and
/// symlinks at relative paths without '..' or '.', nothing written through a symlink or
/// over an entry already there, at most `cap_bytes` of contents; anything else is left
/// out and named in the report. An error only for what the host could not do (a write
/// failed) or a stream that is not tar.
Result<OutputsReport> extract_outputs(const std::filesystem::path& tar, const std::filesystem::path& dir,
                                      uint64_t cap_bytes);

/// After the command ended: ask the agent (feature::outputs) for the tree under
/// `guest_dir` and write it into `host_dir` (extract_outputs), at most `cap_bytes` of
/// contents. Returns what came back; the caller says so.
Result<OutputsReport> collect_tree(AgentClient& agent, Deadline deadline, const std::string& guest_dir,
                                   const std::filesystem::path& host_dir, uint64_t cap_bytes);

}  // namespace kiln::runner
