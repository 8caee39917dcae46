// What an OCI image changes in a run's plan (docs/images.md, "Precedence"):
//   - the host's files (the test executable, its libraries, --file, --setup-file) go
//     under /.kiln/host in the guest, never over the image's own files, and a host
//     executable starts through its own dynamic loader with its own library path, so
//     the image's programs (psql, pg_ctl) keep the image's libc;
//   - a bare command name resolves in the image's PATH;
//   - the environment starts from the image's Env (PATH defaulted if it has none),
//     then --env;
//   - the working directory is --cwd, else the image's WorkingDir, else the current
//     directory (as for the default guest);
//   - the user is --user, else the image's User, else root;
//   - Entrypoint and Cmd are ignored: kiln runs the command it is given.
#pragma once

#include "common/result.h"
#include "runner/guest_image.h"
#include "runner/run_plan.h"

#include <string>
#include <vector>

namespace kiln::runner {

/// Where the host's files go in an image guest.
inline constexpr const char* kHostFilesPrefix = "/.kiln/host";

/// Rewrite `plan` (made by plan_run from `args`) for `image`.
Result<void> plan_for_image(const GuestImage& image, const RunArgs& args, RunPlan& plan);

/// The argv that starts host executable `exe` (its closure placed under `prefix`)
/// through its own loader `interp`: [prefix+interp, --argv0, exe, --library-path, dirs,
/// --inhibit-cache, prefix+exe, args...]. A static executable (no interp) runs as prefix+exe.
std::vector<std::string> loader_argv(const std::string& prefix, const std::string& interp,
                                     const std::vector<std::string>& library_dirs,
                                     const std::vector<std::string>& argv);

}  // namespace kiln::runner
