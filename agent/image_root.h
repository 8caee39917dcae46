// An OCI image as the guest's root (docs/images.md). When the kernel command line
// says `kiln.image=vda`, the agent mounts that disk (a squashfs kiln wrote once per
// image digest) read-only, puts a tmpfs-backed overlay over it so the guest's writes
// never reach the image, moves /proc, /sys, /dev, /run and /tmp into it and makes it
// the root: everything after that — payload files, shares, commands — happens inside
// the image. The agent stays PID 1. This runs before the golden snapshot is saved, so
// a restored VM mounts nothing.
#pragma once

#include <string>
#include <string_view>

namespace kiln::agent {

/// The disk the command line names (`kiln.image=vda` -> "vda"), or "" for the default guest.
std::string image_disk_from_cmdline(std::string_view cmdline);

/// Mount /dev/<disk> and switch into it as described above. Returns "" on success,
/// else what failed (the agent then powers off: a guest without its image is useless).
std::string enter_image_root(const std::string& disk);

}  // namespace kiln::agent
