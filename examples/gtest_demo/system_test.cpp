// Tests that would be unsafe on a developer machine: each runs as root in its own
// microVM, and nothing it writes survives it or reaches the host.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace {
std::string read_all(const char* path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
}  // namespace

TEST(System, WritesToEtc) {
  std::ofstream("/etc/kiln-demo.conf") << "written inside a microVM\n";
  EXPECT_EQ(read_all("/etc/kiln-demo.conf"), "written inside a microVM\n");
}

TEST(System, WritesToRoot) {
  std::ofstream("/kiln-demo-root-file") << "also gone after the VM\n";
  EXPECT_EQ(read_all("/kiln-demo-root-file"), "also gone after the VM\n");
}

TEST(System, StartsClean) {
  EXPECT_FALSE(std::ifstream("/etc/kiln-demo.conf").good());
  EXPECT_FALSE(std::ifstream("/kiln-demo-root-file").good());
}

// What a test keeps goes into KILN_OUTPUT_DIR: kiln brings it back to the host, into
// <build>/kiln-outputs/<test name>/, pass or fail (docs/outputs.md).
TEST(System, LeavesAReport) {
  const char* outputs = std::getenv("KILN_OUTPUT_DIR");
  ASSERT_NE(outputs, nullptr);
  std::ofstream(std::string(outputs) + "/report.txt") << "kept after the VM\n";
}
