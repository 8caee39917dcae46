// Which engine and accelerator kiln settles on, end to end through the kiln binary:
// engine limits are a bad command line, a request only qemu serves goes to qemu, and a
// failed auto-picked KVM is remembered for the boot only once the guest came up
// without it. Each test has its own per-boot records (never the shared cache's).
#include "vm_test_support.h"

#include "tests/unit/vmm/engine_choice_test_util.h"
#include "tests/unit/vmm/env_guard.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

using namespace kiln::vmtest;
namespace stdfs = std::filesystem;

namespace {

/// A PrivateCache whose host records (KVM verdicts) are its own: these tests make kiln
/// write verdicts, which must not steer the other tests sharing the cache.
class IsolatedCache : public PrivateCache {
 public:
  IsolatedCache() {
    stdfs::remove(path() / "host");  // the symlink to the shared records
    stdfs::create_directory(path() / "host");
  }
  std::vector<std::string> verdicts() const {
    std::vector<std::string> out;
    for (const auto& e : stdfs::directory_iterator(path() / "host"))
      if (e.path().filename().string().starts_with("kvm-unusable-")) out.push_back(e.path().filename().string());
    return out;
  }
  std::string read_host_file(const std::string& name) const {
    std::ifstream f(path() / "host" / name);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  /// Record "/dev/kvm ran a guest this boot": auto then picks KVM without a probe VM, on any host.
  void trust_kvm() const {
    std::ofstream(path() / "host" / ("kvm-ran-a-guest-" + kiln::vmm::testing::this_boot_id())) << "yes\n";
  }
};

/// The QEMU accelerator for tests that boot: the suite's (KVM in the lab), else TCG.
std::string suite_accel() {
  const char* accel = std::getenv("KILN_TEST_ACCEL");
  return accel && *accel ? accel : "tcg";
}

size_t count_lines(const stdfs::path& file) {
  std::ifstream f(file);
  size_t n = 0;
  for (std::string line; std::getline(f, line);) ++n;
  return n;
}

}  // namespace

// The defect: --memory 4096 on the kvm engine used to start a bake that failed on the
// engine's own limit. It is a bad command line, refused before anything starts.
TEST(EngineChoice, AnEngineLimitIsABadCommandLine) {
  IsolatedCache cache;
  for (const char* sub : {"run", "bake"}) {
    std::vector<std::string> args = {sub, "--engine", "kvm", "--memory", "4096"};
    if (std::string(sub) == "run") args.insert(args.end(), {"--", "true"});
    auto r = run_kiln(args, cache.path());
    EXPECT_EQ(r.exit_code, 2) << sub << ": " << r.err;
    EXPECT_NE(r.err.find("--memory 4096: the kvm engine supports at most 3328 MiB; use --engine qemu or --memory "
                         "3328 or less"),
              std::string::npos)
        << sub << ": " << r.err;
  }
  EXPECT_FALSE(stdfs::exists(cache.path() / "snapshots")) << "a bake started";
  EXPECT_TRUE(cache.verdicts().empty());
}

// --engine auto with memory only qemu serves runs on qemu, and KVM is not judged by it.
TEST(EngineChoice, AutoRunsMemoryOnlyQemuServesOnQemu) {
  IsolatedCache cache;
  auto r = run_kiln({"run", "-v", "--engine", "auto", "--accel", suite_accel(), "--memory", "4096", "--", "true"},
                    cache.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("engine auto: qemu, because --memory 4096: the kvm engine supports at most 3328 MiB"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(cache.verdicts().empty()) << "KVM was marked unusable: " << cache.read_host_file(cache.verdicts()[0]);
}

// The fallback the verdict exists for, with a qemu whose KVM always fails (a wrapper:
// a broken KVM cannot be had on demand). The first bake tries KVM, fails, bakes with
// TCG, and only then records the verdict; the next bake trusts it and skips KVM.
TEST(EngineChoice, AFailedAutoKvmIsRememberedOnceTheGuestCameUpWithoutIt) {
  if (suite_accel() == "kvm") GTEST_SKIP() << "bakes with TCG: far too slow inside the nested-KVM lab";
  IsolatedCache cache;
  cache.trust_kvm();
  const stdfs::path attempts = cache.path() / "kvm-attempts";
  const stdfs::path wrapper = cache.path() / "qemu-with-broken-kvm";
  std::ofstream(wrapper) << "#!/bin/sh\n"
                            "prev=\n"
                            "for a in \"$@\"; do\n"
                            "  if [ \"$prev\" = -accel ] && [ \"$a\" = kvm ]; then\n"
                            "    echo attempt >> '" << attempts.string() << "'\n"
                            "    echo 'qemu-system-x86_64: simulated broken KVM: KVM_RUN failed' >&2\n"
                            "    exit 1\n"
                            "  fi\n"
                            "  prev=$a\n"
                            "done\n"
                            "exec qemu-system-x86_64 \"$@\"\n";
  stdfs::permissions(wrapper, stdfs::perms::owner_all);
  kiln::vmm::testing::EnvGuard qemu("KILN_QEMU", wrapper.string());

  auto first = run_kiln({"bake", "--engine", "qemu", "--accel", "auto"}, cache.path());
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.out.find("/tcg/tsc-"), std::string::npos) << first.out;
  EXPECT_NE(first.err.find("trying without KVM"), std::string::npos) << first.err;
  ASSERT_EQ(cache.verdicts().size(), 1u);
  EXPECT_NE(cache.read_host_file(cache.verdicts()[0]).find("simulated broken KVM"), std::string::npos);
  EXPECT_EQ(count_lines(attempts), 1u);

  auto second = run_kiln({"bake", "--engine", "qemu", "--accel", "auto"}, cache.path());
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.out.find("up to date"), std::string::npos) << second.out;
  EXPECT_NE(second.out.find("/tcg/tsc-"), std::string::npos) << second.out;
  EXPECT_EQ(count_lines(attempts), 1u) << "KVM was tried again after the verdict";
}
