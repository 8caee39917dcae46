// What a --setup ships into the guest and what keys its fixture layer (no VM).
#include "runner/fixture.h"

#include "runner/layers.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

using namespace kiln::runner;

namespace {

bool ships(const Payload& p, const std::string& path) {
  return std::any_of(p.entries().begin(), p.entries().end(), [&](const PayloadEntry& e) { return e.path == path; });
}

std::string digest_of(const SetupSpec& s) {
  auto payload = setup_payload(s);
  EXPECT_TRUE(payload.ok()) << payload.error().message;
  auto recipe = fixture_recipe(s, *payload, false);
  EXPECT_TRUE(recipe.ok()) << recipe.error().message;
  return recipe.ok() ? recipe->content_digest : "";
}

}  // namespace

TEST(SetupPayload, FirstWordIsResolvedOnTheHostPathWithItsClosure) {
  auto p = setup_payload({"sh -c 'echo hi' && true", {}, {}, {}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE(ships(*p, "/usr/bin/dash")) << "sh resolves to dash on Debian";
  EXPECT_TRUE(std::any_of(p->entries().begin(), p->entries().end(),
                          [](const PayloadEntry& e) { return e.path.find("libc.so") != std::string::npos; }));
}

TEST(SetupPayload, UnknownFirstWordShipsNothing) {
  // A shell builtin or a guest-only command: nothing on the host to ship.
  auto p = setup_payload({"cd / && kiln-no-such-command-xyz", {}, {}, {}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE(p->empty());
}

TEST(SetupPayload, SetupFilesAreAddedExecutablesWithClosure) {
  // A data file with an x bit is shipped as a file, not refused as "not an executable".
  const std::string data = ::testing::TempDir() + "kiln-fixture-seed.sql";
  { std::ofstream(data) << "INSERT 1;\n"; }
  ::chmod(data.c_str(), 0755);
  auto p = setup_payload({"true", {"/usr/share/common-licenses/GPL-3", data, "/usr/bin/env"}, {}, {}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE(ships(*p, "/usr/share/common-licenses/GPL-3"));
  EXPECT_TRUE(ships(*p, data));
  EXPECT_TRUE(ships(*p, "/usr/bin/env"));
  EXPECT_TRUE(std::any_of(p->entries().begin(), p->entries().end(),
                          [](const PayloadEntry& e) { return e.path.find("libc.so") != std::string::npos; }));
  ::unlink(data.c_str());
  auto bad = setup_payload({"true", {"/no/such/seed.sql"}, {}, {}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("--setup-file /no/such/seed.sql"), std::string::npos) << bad.error().message;
}

TEST(SetupPayload, EmptySetupIsRefused) {
  auto p = setup_payload({"   ", {}, {}, {}});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("--setup is empty"), std::string::npos);
}

TEST(FixtureRecipe, KeyedByCommandPayloadAndEnvironment) {
  const SetupSpec base{"echo seed > /x", {}, {"A=1"}, {}};
  const auto d = digest_of(base);
  EXPECT_EQ(d, digest_of(base));
  EXPECT_NE(d, digest_of({"echo seed > /y", {}, {"A=1"}, {}}));
  EXPECT_NE(d, digest_of({"echo seed > /x", {}, {"A=2"}, {}}));
  EXPECT_NE(d, digest_of({"echo seed > /x", {"/usr/share/common-licenses/GPL-3"}, {"A=1"}, {}}));
  // An OCI image guest's base environment keys the layer too.
  EXPECT_NE(d, digest_of({"echo seed > /x", {}, {"A=1"}, {"PATH=/usr/bin"}}));
  auto payload = setup_payload(base);
  ASSERT_TRUE(payload.ok());
  auto recipe = fixture_recipe(base, *payload, false);
  ASSERT_TRUE(recipe.ok());
  EXPECT_EQ(recipe->kind, "fixture");
  EXPECT_EQ(recipe->label, "setup: echo seed > /x");
}

TEST(Layers, KilnNoLayersTurnsThemOff) {
  ::unsetenv("KILN_NO_LAYERS");
  EXPECT_TRUE(layers_enabled(false));
  EXPECT_FALSE(layers_enabled(true));
  ::setenv("KILN_NO_LAYERS", "1", 1);
  EXPECT_FALSE(layers_enabled(false));
  ::setenv("KILN_NO_LAYERS", "0", 1);
  EXPECT_TRUE(layers_enabled(false));
  ::setenv("KILN_NO_LAYERS", "", 1);
  EXPECT_TRUE(layers_enabled(false));
  ::unsetenv("KILN_NO_LAYERS");
}
