#include "runner/ctest_plan.h"

#include <gtest/gtest.h>

namespace kiln::runner {
namespace {

// The shape of `ctest --show-only=json-v1` (CMake 3.25), trimmed to what is read.
constexpr const char* kModel = R"({
  "kind": "ctestInfo", "version": {"major": 1, "minor": 0},
  "tests": [
    {"name": "where_am_i", "command": ["/opt/kiln/bin/kiln", "run", "--list-tests-on-host", "--", "/b/where_am_i"]},
    {"name": "cases.Cases.First",
     "command": ["/opt/kiln/bin/kiln", "run", "--", "/b/cases_test", "--gtest_filter=Cases.First"]},
    {"name": "script_test", "command": ["/usr/bin/cmake", "-E", "echo", "hi"]},
    {"name": "target_file_test", "command": ["/b/sub/../where_am_i"]},
    {"name": "cases_NOT_BUILT"}
  ]
})";

TEST(CtestPlan, TestsStartingWithKilnRunAreInVms) {
  auto plan = plan_from_ctest_json(kModel, "/b");
  ASSERT_TRUE(plan) << plan.error().message;
  ASSERT_EQ(plan->size(), 5u);
  EXPECT_TRUE((*plan)[0].in_vm);
  EXPECT_TRUE((*plan)[1].in_vm);
  EXPECT_FALSE((*plan)[2].in_vm);
  EXPECT_FALSE((*plan)[3].in_vm);
  EXPECT_FALSE((*plan)[4].in_vm);
}

TEST(CtestPlan, ABuiltExecutableWithoutLauncherIsNamed) {
  auto plan = plan_from_ctest_json(kModel, "/b");
  ASSERT_TRUE(plan);
  EXPECT_FALSE((*plan)[2].built_but_on_host);  // /usr/bin/cmake is not in the build tree
  EXPECT_TRUE((*plan)[3].built_but_on_host);
  EXPECT_FALSE((*plan)[4].built_but_on_host);
}

TEST(CtestPlan, AKilnBinaryByAnotherNameCounts) {
  constexpr const char* model = R"({"tests": [{"name": "t", "command": ["/x/kiln-test-hooks", "run", "--", "/b/t"]}]})";
  auto by_name = plan_from_ctest_json(model, "/b");
  ASSERT_TRUE(by_name);
  EXPECT_FALSE((*by_name)[0].in_vm);
  auto by_identity = plan_from_ctest_json(model, "/b", [](const std::string& p) { return p == "/x/kiln-test-hooks"; });
  ASSERT_TRUE(by_identity);
  EXPECT_TRUE((*by_identity)[0].in_vm);
}

TEST(CtestPlan, KilnWithAnotherSubcommandIsNotAVmTest) {
  constexpr const char* model = R"({"tests": [{"name": "bake", "command": ["/x/kiln", "bake"]}]})";
  auto plan = plan_from_ctest_json(model, "/b");
  ASSERT_TRUE(plan);
  EXPECT_FALSE((*plan)[0].in_vm);
}

TEST(CtestPlan, SummaryCountsAndNamesTheHostTests) {
  auto plan = plan_from_ctest_json(kModel, "/b");
  ASSERT_TRUE(plan);
  EXPECT_EQ(summarize(*plan),
            "2 tests run in microVMs, 3 stay on the host (script_test, target_file_test, cases_NOT_BUILT)");
  EXPECT_EQ(summarize({}), "0 tests run in microVMs, 0 stay on the host");
  std::vector<PlannedTest> many(8);
  for (size_t i = 0; i < many.size(); ++i) many[i].name = "t" + std::to_string(i);
  many[0].in_vm = true;
  EXPECT_EQ(summarize(many), "1 test runs in microVMs, 7 stay on the host (t1, t2, t3, t4, t5 and 2 more)");
}

TEST(CtestPlan, MalformedModelsAreErrors) {
  EXPECT_FALSE(plan_from_ctest_json("not json", "/b"));
  EXPECT_FALSE(plan_from_ctest_json("[]", "/b"));
  EXPECT_FALSE(plan_from_ctest_json(R"({"tests": {}})", "/b"));
  EXPECT_FALSE(plan_from_ctest_json(R"({"tests": [{"command": ["x"]}]})", "/b"));
  EXPECT_FALSE(plan_from_ctest_json(R"({"tests": [{"name": "t", "command": ["x", 3]}]})", "/b"));
}

}  // namespace
}  // namespace kiln::runner
