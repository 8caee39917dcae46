// The SHARE request: the host's trees (its source and build directories) at
// their own paths in the guest, read on demand and live, with everything the
// test writes kept in the guest. FUSE carries the host's files (relayed over the
// share port, agent/fuse_relay.h); an overlay per root puts the payload's files
// on top of them and a tmpfs under the test's writes. Layout and options:
// agent/share_plan.h; the whole exchange: docs/protocol.md ("share").
#pragma once

#include "agent/protocol.h"
#include "agent/status.h"

namespace kiln::agent {

/// Mounts `req.roots` (checked with check_share_roots first): opens the share
/// port once the host is at its other end, mounts FUSE at kShareFuseDir, starts
/// the relay, mounts the upper tmpfs, then one overlay per root. Once per VM, after
/// the payload is in place: a root the payload created a directory for gets that
/// directory as its top layer. The message names the step that failed and on what.
Status mount_shares(const proto::Share& req);

}  // namespace kiln::agent
