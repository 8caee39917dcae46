// The kept-VM store (kiln run --keep-failed, kiln shell): kept.json round-trips and
// is checked as untrusted input; ids resolve by prefix; the limits remove the
// oldest first and never the one just kept unless it alone is over them; gc
// removes what cannot be used. Real directories; no VM (the VM tests save real ones).
#include "runner/kept_vms.h"

#include "common/fs.h"

#include <gtest/gtest.h>

#include <fstream>
#include <thread>

namespace kiln::runner {
namespace {

KeptVm sample() {
  KeptVm vm;
  vm.test = "suite.Case";
  vm.why = "exited with code 1";
  vm.kiln_version = KILN_VERSION;
  vm.engine = "qemu";
  vm.engine_identity = "qemu-7.2.22/devices-2/tcg";
  vm.guest.kernel = "/k/vmlinuz";
  vm.guest.initramfs = "/k/initrd";
  vm.guest.cmdline = "console=ttyS0";
  vm.guest.disks = {{"/img/root.sqfs", true}};
  vm.command = {{"/build/t", "--gtest_filter=A.B"}, {"PATH=/bin", "HOME=/root"}, "/build", "", {"/src"}, "{}"};
  return vm;
}

class Kept : public ::testing::Test {
 protected:
  Kept() : dir_(fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-kept-test-")), kept_(dir_->path()) {}

  /// Keeps a VM whose files take about `mib` MiB.
  std::string keep(const KeptLimits& limits, int mib = 1, Result<std::string>* result = nullptr) {
    auto d = kept_.begin();
    EXPECT_TRUE(d.ok());
    std::ofstream(KeptVms::files_in(*d).state) << std::string(static_cast<size_t>(mib) << 20, 'x');
    std::ofstream(KeptVms::files_in(*d).memory) << "";
    auto id = kept_.publish(*d, sample(), limits);
    if (result) *result = id;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // distinct creation times
    return id ? *id : "";
  }

  Result<fs::TempDir> dir_;
  KeptVms kept_;
};

TEST(KeptRecord, RoundTripsAndRefusesWhatIsNotOne) {
  KeptVm vm = sample();
  vm.created_ns = 1700000000123456789;
  auto back = parse_kept(to_json(vm));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->test, vm.test);
  EXPECT_EQ(back->command.argv, vm.command.argv);
  EXPECT_EQ(back->command.env, vm.command.env);
  EXPECT_EQ(back->command.shares, vm.command.shares);
  EXPECT_EQ(back->guest.disks, vm.guest.disks);
  EXPECT_EQ(back->created_ns, vm.created_ns);

  const std::string good = to_json(vm);
  auto broken = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    text.replace(text.find(from), from.size(), to);
    return parse_kept(text);
  };
  EXPECT_FALSE(parse_kept("not json"));
  EXPECT_FALSE(broken("\"kind\": \"failed\"", "\"kind\": \"golden\""));
  EXPECT_FALSE(broken("\"format_version\": 1", "\"format_version\": 2"));
  EXPECT_FALSE(broken("\"engine\": \"qemu\"", "\"engine\": \"bochs\""));
  EXPECT_FALSE(broken("\"cwd\": \"/build\"", "\"cwd\": \"build\""));
  EXPECT_FALSE(broken("\"PATH=/bin\"", "\"PATH\""));
  EXPECT_FALSE(broken("\"kernel\": \"/k/vmlinuz\"", "\"kernel\": \"vmlinuz\""));
  EXPECT_FALSE(broken("\"memory_mib\": 256", "\"memory_mib\": -1"));
  EXPECT_FALSE(parse_kept(std::string(kMaxKeptRecordBytes + 1, ' ')));
}

TEST_F(Kept, IdsResolveByUniquePrefixAndNothingElse) {
  const std::string id = keep({});
  ASSERT_EQ(id.size(), 12u);
  EXPECT_EQ(kept_.find(id.substr(0, 3))->id, id);
  EXPECT_EQ(kept_.find(id)->test, "suite.Case");
  for (const char* bad : {"", "../etc", "ABC", "0123456789abc", "zz"}) EXPECT_FALSE(kept_.find(bad)) << bad;
  EXPECT_FALSE(kept_.find(id == "000000000000" ? "1" : "000000000000"));
}

TEST_F(Kept, TheOldestGoFirstAndTheNewestStays) {
  const std::string a = keep({3, 100u << 20});
  const std::string b = keep({3, 100u << 20});
  const std::string c = keep({3, 100u << 20});
  const std::string d = keep({2, 100u << 20});  // count: a and b go
  std::vector<std::string> ids;
  for (const auto& e : kept_.list()) ids.push_back(e.id);
  EXPECT_EQ(ids, (std::vector<std::string>{c, d}));

  const std::string e = keep({10, 3u << 20}, 1);  // bytes: 3 MiB and their records > 3 MiB, c goes
  ids.clear();
  for (const auto& k : kept_.list()) ids.push_back(k.id);
  EXPECT_EQ(ids, (std::vector<std::string>{d, e}));

  Result<std::string> too_big = std::string();
  keep({10, 1u << 20}, 2, &too_big);  // alone over the byte limit: not kept, and said so
  ASSERT_FALSE(too_big);
  EXPECT_NE(too_big.error().message.find("alone is over the limits"), std::string::npos);
}

TEST_F(Kept, AHeldVmIsNotRemovedAndGcTakesWhatCannotBeUsed) {
  const std::string a = keep({});
  const std::string b = keep({});
  {
    auto held = kept_.hold(a);
    ASSERT_TRUE(held);
    EXPECT_FALSE(kept_.remove(a));
  }
  EXPECT_TRUE(kept_.remove(a));
  EXPECT_FALSE(kept_.find(a));

  std::ofstream(dir_->path() / b / "kept.json", std::ios::trunc) << "{";
  const std::string c = keep({});
  auto removed = kept_.gc(KILN_VERSION, std::chrono::hours(1), std::nullopt, false);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].id, b);
  EXPECT_EQ(kept_.list().size(), 1u);
  EXPECT_EQ(kept_.gc("9.9.9", std::chrono::hours(1), std::nullopt, true).size(), 1u);  // dry run
  EXPECT_EQ(kept_.list().size(), 1u);
  EXPECT_EQ(kept_.gc(KILN_VERSION, std::chrono::hours(1), 0, false).size(), 1u);  // --max-size 0
  EXPECT_TRUE(kept_.list().empty());
  (void)c;
}

}  // namespace
}  // namespace kiln::runner
