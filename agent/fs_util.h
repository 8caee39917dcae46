// Small filesystem helpers shared by the agent's request handlers.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "agent/status.h"

namespace kiln::agent {

/// Creates `path` and its missing parents (like `mkdir -p`). Parents get 0755;
/// `path` itself gets exactly `mode` when it is created here (umask ignored).
/// Existing symlinks to directories count as directories (e.g. /lib -> usr/lib).
Status mkdir_p(const std::string& path, mode_t mode);

/// Directory part of an absolute path: "/a/b" -> "/a", "/a" -> "/".
std::string parent_dir(std::string_view path);

/// Writes all of `data` to a blocking fd, retrying short writes and EINTR.
Status write_all(int fd, const char* data, size_t size, std::string_view what);

}  // namespace kiln::agent
