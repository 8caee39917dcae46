// Test-only hooks, linked only into kiln-test-hooks (CMake option KILN_TEST_HOOKS), the
// kiln the VM tests that need them run. The installed kiln does not contain this file,
// so no KILN_TEST_* variable changes what it does.
#include "runner/layers.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace {

// KILN_TEST_PAUSE_BEFORE_PUBLISH=1: stop right before publishing a layer so a test can
// kill kiln there and check that the store shows no half layer.
void pause_before_publish() {
  const char* hook = std::getenv("KILN_TEST_PAUSE_BEFORE_PUBLISH");
  if (!hook || std::strcmp(hook, "1") != 0) return;
  const char line[] = "kiln: test hook: paused before publishing a layer\n";
  (void)!::write(STDERR_FILENO, line, sizeof line - 1);
  ::sleep(600);
}

// Installed before main() runs: this object is linked into the executable itself (not
// pulled from a library), so its initializer always runs.
[[maybe_unused]] const bool installed = (kiln::runner::set_before_layer_publish_hook(&pause_before_publish), true);

}  // namespace
