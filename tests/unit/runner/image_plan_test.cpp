#include "runner/image_plan.h"

#include <gtest/gtest.h>

namespace kiln::runner {
namespace {

TEST(LoaderArgv, ADynamicExecutableStartsThroughItsOwnLoaderAndLibraries) {
  auto argv = loader_argv("/.kiln/host", "/lib64/ld-linux-x86-64.so.2",
                          {"/lib/x86_64-linux-gnu", "/work/build/lib"}, {"/work/build/t", "--gtest_brief=1"});
  EXPECT_EQ(argv, (std::vector<std::string>{"/.kiln/host/lib64/ld-linux-x86-64.so.2", "--argv0", "/work/build/t",
                                            "--library-path", "/.kiln/host/lib/x86_64-linux-gnu:/.kiln/host/work/build/lib",
                                            "--inhibit-cache", "/.kiln/host/work/build/t", "--gtest_brief=1"}));
}

TEST(LoaderArgv, AStaticExecutableRunsDirectlyFromThePrefix) {
  auto argv = loader_argv("/.kiln/host", "", {}, {"/work/build/static_t", "a"});
  EXPECT_EQ(argv, (std::vector<std::string>{"/.kiln/host/work/build/static_t", "a"}));
}

TEST(LoaderArgv, NoLibrariesMeansNoLibraryPath) {
  auto argv = loader_argv("/p", "/lib64/ld.so", {}, {"/x"});
  EXPECT_EQ(argv, (std::vector<std::string>{"/p/lib64/ld.so", "--argv0", "/x", "--inhibit-cache", "/p/x"}));
}

GuestImage image_with(image::ImageRunConfig config) {
  GuestImage g;
  g.image.manifest_digest = "sha256:" + std::string(64, 'a');
  g.image.config = std::move(config);
  return g;
}

TEST(PlanForImage, EnvironmentWorkingDirectoryAndUserFollowThePrecedenceRules) {
  RunArgs args;
  args.argv = {"psql", "--version"};
  auto plan = plan_run(args);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  image::ImageRunConfig config;
  config.env = {"LANG=C.UTF-8"};
  config.working_dir = "/srv";
  config.user = "postgres";
  ASSERT_TRUE(plan_for_image(image_with(config), args, *plan).ok());
  EXPECT_EQ(plan->request.argv, args.argv) << "a bare name is the image's program";
  ASSERT_EQ(plan->request.base_env.size(), 2u);
  EXPECT_EQ(plan->request.base_env[0], "LANG=C.UTF-8");
  EXPECT_EQ(plan->request.base_env[1].rfind("PATH=", 0), 0u) << "PATH defaulted when the image has none";
  EXPECT_EQ(plan->request.cwd, "/srv");
  EXPECT_EQ(plan->request.user, "postgres");

  RunArgs explicit_args = args;
  explicit_args.cwd = "/work";
  explicit_args.user = "0:0";
  auto plan2 = plan_run(explicit_args);
  ASSERT_TRUE(plan2.ok());
  ASSERT_TRUE(plan_for_image(image_with(config), explicit_args, *plan2).ok());
  EXPECT_EQ(plan2->request.cwd, "/work");
  EXPECT_EQ(plan2->request.user, "0:0");
}

TEST(PlanForImage, AHostExecutableAndItsClosureGoUnderTheHostPrefix) {
  RunArgs args;
  args.argv = {"/bin/true"};
  auto plan = plan_run(args);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ASSERT_TRUE(plan_for_image(image_with({}), args, *plan).ok());
  EXPECT_EQ(plan->payload.guest_prefix(), kHostFilesPrefix);
  ASSERT_GE(plan->request.argv.size(), 4u);
  EXPECT_EQ(plan->request.argv[0].rfind(kHostFilesPrefix, 0), 0u);
  EXPECT_EQ(plan->request.argv[1], "--argv0");
  EXPECT_EQ(plan->request.argv[2], "/bin/true");
  EXPECT_EQ(plan->request.argv.back(), std::string(kHostFilesPrefix) + "/bin/true");
}

}  // namespace
}  // namespace kiln::runner
