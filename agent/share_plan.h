// What a share request mounts where, decided before anything is mounted: the
// checks on the roots and the exact mount options (docs/protocol.md, "share").
// Pure, so it is unit-tested on the host; agent/share_mount.cpp carries it out.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "agent/status.h"

namespace kiln::agent {

/// Where the agent keeps a share's machinery. No root may be this directory, in
/// it, or above it: an overlay there would hide the mounts the others need.
inline constexpr std::string_view kShareRunDir = "/run/kiln";
/// The FUSE mount of the host's trees; its entry "i" is root i.
inline constexpr std::string_view kShareFuseDir = "/run/kiln/share";
/// One tmpfs holding every root's overlay upper and work directories.
inline constexpr std::string_view kShareUpperDir = "/run/kiln/upper";
/// Where root i's payload directory is bind-mounted, to be the overlay's top lower layer.
inline constexpr std::string_view kShareLowerDir = "/run/kiln/lower";

/// The directories of root `index` (the share's entry "index").
struct RootDirs {
  std::string shared;  ///< the host tree in the guest: kShareFuseDir/<index>
  std::string lower;   ///< the payload's directory, bound here: kShareLowerDir/<index>
  std::string upper;   ///< the overlay's upper layer (the test's writes): kShareUpperDir/<index>/u
  std::string work;    ///< overlayfs's work directory: kShareUpperDir/<index>/w
};
RootDirs root_dirs(size_t index);

/// The roots as a whole: none is "/", ends in "/", or touches kShareRunDir (is it,
/// lies in it or above it), and none is another's duplicate or lies inside another
/// (kiln drops nested roots before it sends them). The message names the root.
Status check_share_roots(const std::vector<std::string>& roots);

/// mount(2) data for the FUSE mount on device fd `fuse_fd`: a read-only
/// directory root owned by root, other users allowed, permissions checked by the kernel.
std::string fuse_mount_data(int fuse_fd);

/// mount(2) data for the overlay of one root: upper and work from `dirs`, and as
/// lower layers the payload's directory (when it had one) above the shared tree.
std::string overlay_mount_data(const RootDirs& dirs, bool payload_lower);

}  // namespace kiln::agent
