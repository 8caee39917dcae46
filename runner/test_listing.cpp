#include "runner/test_listing.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kiln::runner {

bool is_test_listing(const std::vector<std::string>& argv) {
  // A bare name is a guest command (busybox), never a host test executable.
  if (argv.empty() || argv[0].find('/') == std::string::npos) return false;
  auto args = std::vector<std::string>(argv.begin() + 1, argv.end());
  bool lists = std::ranges::find(args, "--gtest_list_tests") != args.end();
  bool only_gtest_flags = std::ranges::all_of(args, [](const std::string& a) { return a.starts_with("--gtest_"); });
  return lists && only_gtest_flags;
}

Result<void> exec_listing_on_host(const std::vector<std::string>& argv) {
  std::vector<char*> c_argv;
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  ::execv(c_argv[0], c_argv.data());
  int err = errno;
  Error e = make_error("cannot list the tests of {} on the host: {}", argv[0], std::strerror(err));
  e.kind = err == ENOENT || err == ENOTDIR ? ErrorKind::not_found : ErrorKind::not_executable;
  return e;
}

}  // namespace kiln::runner
