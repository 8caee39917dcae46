// One-time set-up of the guest when the agent starts as PID 1, before the
// channel exists. Each step logs its own failures and carries on: a guest with
// one missing mount is more useful (and easier to debug) than a kernel panic.
#pragma once

namespace kiln::agent {

/// Mounts proc, sysfs, devtmpfs, devpts, /dev/shm, /tmp and /run, creating mount points.
void mount_basics();

/// Makes sure fds 0-2 are open (the kernel leaves them closed when the
/// initramfs has no /dev/console node); they point at the console afterwards.
void ensure_stdio();

/// Loads the kernel modules listed in `list_path` (one absolute path a line,
/// dependency order, '#' comments) with finit_module.
void load_modules(const char* list_path);

/// Sets the kernel's hostname from the first line of `path` (the initramfs's
/// /etc/hostname), so gethostname() names what /etc/hosts resolves.
void set_hostname(const char* path);

/// A command killed by a signal that dumps core writes its core into its
/// KILN_OUTPUT_DIR (proto::kGuestOutputDir), which kiln brings back to the host
/// (docs/outputs.md); without one the kernel finds no directory there and writes
/// nothing. Sets the kernel's core_pattern and an unlimited RLIMIT_CORE for every
/// process the agent starts.
void enable_core_dumps();

}  // namespace kiln::agent
