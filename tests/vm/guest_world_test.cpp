// The guest is the system ordinary test programs expect: localhost resolves (with and
// without AI_ADDRCONFIG) and a server on it answers over 127.0.0.1 and ::1, root and
// nobody exist, the hostname resolves, /tmp and /dev/shm work and local time is UTC.
#include "vm_test_support.h"

#include <gtest/gtest.h>

#include <sstream>

using namespace kiln::vmtest;

namespace {

// Every check guest_world_probe makes: a probe that stopped early or skipped one fails too.
const char* const kChecks[] = {
    "resolve localhost AF_UNSPEC",
    "resolve localhost AF_UNSPEC AI_ADDRCONFIG",
    "resolve localhost AF_INET",
    "resolve localhost AF_INET AI_ADDRCONFIG",
    "resolve localhost AF_INET6",
    "resolve localhost AF_INET6 AI_ADDRCONFIG",
    "listen on localhost",
    "resolve localhost for the client",
    "fetch from localhost at 127.0.0.1",
    "fetch from localhost at ::1",
    "fetched over 127.0.0.1 and ::1",
    "getpwuid(0) is root",
    "getpwnam(nobody)",
    "getgrgid(0) is root",
    "getgrnam(nogroup)",
    "gethostname is /etc/hostname",
    "resolve the hostname",
    "resolve the hostname AI_ADDRCONFIG",
    "lo up with 127.0.0.1 and ::1",
    "a private IPv4 address off loopback",
    "a private IPv6 address off loopback",
    "no route to 192.0.2.1",
    "no route to 2001:db8::1",
    "/tmp is sticky and world-writable",
    "write a file in /tmp",
    "/dev/shm is sticky and world-writable",
    "shm_open, ftruncate and mmap",
    "localtime is UTC",
};

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

}  // namespace

TEST(GuestWorld, DynamicProgramFindsLocalhostUsersHostnameTmpShmAndUtc) {
  auto r = run_kiln({"run", "--", GUEST_WORLD_PROBE});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* check : kChecks) EXPECT_TRUE(has_line(r.out, std::string("ok ") + check)) << check << "\n" << r.out;
}

TEST(GuestWorld, BusyboxSeesTheSameNameAndZone) {
  auto r = run_kiln({"run", "--", "sh", "-c", "hostname; cat /etc/hostname; date +%Z; id -un; id -gn nobody"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "kiln\nkiln\nUTC\nroot\nnogroup\n") << r.err;
}
