// SIGINT/SIGTERM/SIGHUP handling: a self-pipe that every wait loop polls, so an
// interrupted kiln (ctest's timeout kill, ^C) tears the VM down and cleans up
// instead of dying with qemu and temp files behind it.
#pragma once

namespace kiln::interrupt {

/// Install the handlers. Call once, early in main.
void install();
/// Readable once a termination signal arrived; include it in every poll().
int fd();
/// The signal that arrived, or 0.
int received();

}  // namespace kiln::interrupt
