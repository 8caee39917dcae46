// Text from the guest reaches the user's terminal escaped, on a real VM: a guest
// that writes terminal escape sequences to its console cannot make the console
// tail kiln shows in an error clear the screen or retitle the window.
#include "vm_test_support.h"

#include <gtest/gtest.h>

using namespace kiln::vmtest;

TEST(ConsoleText, TheConsoleTailInAnErrorIsEscaped) {
  // Clear screen, set the window title, a CR that would hide the line before it;
  // then end the VM so that kiln fails with the console tail.
  auto r = run_kiln({"run", "--", "sh", "-c",
                     "printf 'before\\033[2J\\033]0;pwned\\007 after\\rhidden\\n' > /dev/console; poweroff -f"});
  EXPECT_EQ(r.exit_code, 125) << r.err;
  EXPECT_NE(r.err.find("--- guest console (tail) ---"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("before\\x1b[2J\\x1b]0;pwned\\x07 after\\rhidden"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << "a raw ESC reached the terminal";
  EXPECT_EQ(r.err.find('\x07'), std::string::npos);
}
