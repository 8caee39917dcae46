// collect (feature::outputs): the tree a test left in its KILN_OUTPUT_DIR, sent back
// to the host as one ustar stream in output_data frames. Nothing is followed: a
// symlink goes as a symlink, a special file is left out, and the stream is bounded
// by the host's byte cap and proto::kMaxOutputEntries. What is left out is named.
#pragma once

#include "agent/protocol.h"
#include "agent/status.h"

#include <functional>
#include <string_view>

namespace kiln::agent {

/// Write the tree under `request.dir` as one ustar stream through `sink`, in chunks of
/// at most 64 KiB, the end-of-archive blocks included; `sent` says what went and what
/// was left out. A missing directory is an empty stream. A failing sink ends it: its
/// status is returned.
Status write_outputs(const proto::Collect& request, const std::function<Status(std::string_view)>& sink,
                     proto::Collected* sent);

/// Whether `dir` exists and holds at least one entry (a symlink there is not followed).
bool directory_has_entries(const char* dir);

}  // namespace kiln::agent
