// `kiln run`'s tree shares (docs/shares.md): host directories — by default the
// project's source and build trees, given by the CMake functions — appear at their
// own paths in the guest, read-only and live, read on demand through the share port;
// what the test writes there stays in a guest-only layer. Attached after the restore
// and the payload, before exec: no golden or layer ever holds a mounted share (a
// kept failed VM does, and its share session is resumed: kept_vms.h).
#pragma once

#include "common/result.h"
#include "share/share_server.h"
#include "vmm/engine.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::runner {

/// The roots to share for `dirs` (--share): absolute and normalised, each an existing
/// directory (else an error naming it), in the order given, with a directory inside
/// another one dropped (the outer one already shares it).
Result<std::vector<std::string>> share_roots(const std::vector<std::string>& dirs);

/// Start serving `roots` on `vm`'s share port (nullptr for no roots). The server
/// answers the guest's requests until it is destroyed; the agent mounts the share
/// when it gets the `share` request (queued by run_in_vm after the payload). A kept
/// VM has it mounted: `resume_state` (ShareServer::export_state) serves on its session.
Result<std::unique_ptr<share::ShareServer>> serve_shares(vmm::Vm& vm, const std::vector<std::string>& roots,
                                                         std::string_view resume_state = {});

/// After the command: how much the share served (-v), and why it stopped early if it
/// did (then reads of shared files in the guest failed; said without -v).
void report_share(const share::ShareServer& server);

}  // namespace kiln::runner
