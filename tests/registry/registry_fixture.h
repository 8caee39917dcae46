// Real registries on loopback for the registry tests: scripts/test-registry (Debian's
// docker-registry, plain / TLS+Basic / token mode), a test image built with umoci and
// pushed with skopeo, and tests/registry/fault_proxy.py in front of a registry.
#pragma once

#include "common/result.h"
#include "common/subprocess.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::registry_test {

/// "" when every tool (names from scripts/tools.txt) is here; else check-tools' lines,
/// for GTEST_SKIP: a missing tool is a skip with its reason, never a pass.
std::string missing_tools(const std::vector<std::string>& tools);

/// A registry started by scripts/test-registry; stopped (--stop) when destroyed.
class Registry {
 public:
  /// `args`: test-registry's options (--tls, --htpasswd U:P, --token, ...).
  static Result<std::unique_ptr<Registry>> start(const std::vector<std::string>& args);
  ~Registry();
  std::string addr() const { return info_.at("ADDR"); }  ///< 127.0.0.1:PORT
  std::string get(const std::string& key) const { return info_.count(key) ? info_.at(key) : ""; }
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

 private:
  Registry() = default;
  std::map<std::string, std::string> info_;
};

/// The test image: an OCI layout (umoci) with two layers: /etc/greeting and a 300 KB
/// /data/blob.bin (so a stall mid-body and a resume have room).
Result<std::filesystem::path> build_test_layout(const std::filesystem::path& dir);

/// skopeo copy oci:<layout>:t docker://<dest> with `extra` options (--format v2s2,
/// --dest-creds U:P); TLS not verified for this push (it is the fixture, not the test).
Result<void> push(const std::filesystem::path& layout, const std::string& dest,
                  const std::vector<std::string>& extra = {});

/// The manifest bytes of docker://<ref> as skopeo sees them (inspect --raw).
Result<std::string> raw_manifest(const std::string& ref, const std::vector<std::string>& extra = {});

/// tests/registry/fault_proxy.py in front of `upstream` (host:port), killed when destroyed.
class FaultProxy {
 public:
  static Result<std::unique_ptr<FaultProxy>> start(const std::string& upstream, const std::vector<std::string>& args,
                                                   const std::filesystem::path& scratch);
  std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }
  /// The proxy's counters (GET /_fault/stats).
  Result<nlohmann::json> stats() const;

 private:
  FaultProxy(ChildProcess child, int port) : child_(std::move(child)), port_(port) {}
  ChildProcess child_;
  int port_;
};

/// A docker config.json giving `user:pass` for `registry`.
std::string auth_json(const std::string& registry, const std::string& user, const std::string& pass);

}  // namespace kiln::registry_test

#include "common/fs.h"
#include "common/temp_file.h"
#include "image/oci/registry_client.h"

#include <gtest/gtest.h>

namespace kiln::registry_test {

/// Per test: the tools checked (skip with the reason otherwise), a scratch directory,
/// the test image's layout, $REGISTRY_AUTH_FILE pointing at an auth file of the test's
/// own (empty: no credentials), and loopback never sent to a proxy.
class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override;
  /// Write the auth file the client reads.
  void set_auth(const std::string& json);
  /// A source for `repo` on `registry` with `options`; fails the test if refused.
  std::unique_ptr<image::BlobSource> source(const std::string& registry, const std::string& repo,
                                            const image::RegistryOptions& options);
  /// Fetch every blob the OCI manifest `bytes` names and check each against its digest.
  void expect_blobs_verify(image::BlobSource& src, const std::string& bytes);

  std::optional<fs::TempDir> scratch_;
  std::filesystem::path layout_;
};

}  // namespace kiln::registry_test
