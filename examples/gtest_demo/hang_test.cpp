// A test that never finishes: add_microvm_test(... TIMEOUT 3) makes kiln kill its VM.
#include <gtest/gtest.h>

#include <unistd.h>

TEST(Hang, Forever) {
  for (;;) pause();
}
