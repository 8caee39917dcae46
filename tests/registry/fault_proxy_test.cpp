// The registry client through tests/registry/fault_proxy.py: 429 with Retry-After,
// a redirect of blobs to another origin, a blob that stalls mid-body.
#include "tests/registry/registry_fixture.h"

#include "common/clock.h"
#include "common/sha256.h"

namespace kiln::registry_test {
namespace {

class FaultyRegistry : public RegistryTest {
 protected:
  /// A registry (`registry_args`), the test image pushed to it, and the proxy in front.
  void start(const std::vector<std::string>& proxy_args, const std::vector<std::string>& registry_args = {},
             const std::vector<std::string>& push_args = {}) {
    auto r = Registry::start(registry_args);
    ASSERT_TRUE(r) << r.error().message;
    registry_ = std::move(*r);
    ASSERT_TRUE(push(layout_, registry_->addr() + "/kiln-test/small:1", push_args));
    auto p = FaultProxy::start(registry_->addr(), proxy_args, scratch_->path());
    ASSERT_TRUE(p) << p.error().message;
    proxy_ = std::move(*p);
    options_.insecure_hosts = {proxy_->addr()};
    options_.timeout_s = 1;
    options_.max_retries = 3;
  }
  int stat(const char* name) {
    auto s = proxy_->stats();
    EXPECT_TRUE(s) << s.error().message;
    return s ? (*s)[name].get<int>() : -1;
  }
  /// The big layer (300 KB) of the test image, fetched through the proxy into a new file.
  Result<void> fetch_big_layer(image::BlobSource& src, std::string* digest, std::filesystem::path* dest) {
    KILN_ASSIGN_OR_RETURN(auto m, src.manifest("1"));
    auto layer = nlohmann::json::parse(m.bytes)["layers"][1];
    *digest = layer["digest"];
    *dest = scratch_->path() / "big-layer";
    KILN_TRY(fs::create_new_file(*dest, 0644));
    return src.blob(*digest, layer["size"], *dest, {});
  }
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<FaultProxy> proxy_;
  image::RegistryOptions options_;
};

TEST_F(FaultyRegistry, TooManyRequestsIsRetriedAfterRetryAfter) {
  start({"--fail-429", "2", "--retry-after", "1"});
  if (HasFatalFailure()) return;
  auto src = source(proxy_->addr(), "kiln-test/small", options_);
  auto t0 = Clock::now();
  auto m = src->manifest("1");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_GE(ms_since(t0), 1900) << "Retry-After: 1 honoured twice";
  EXPECT_EQ(stat("served_429"), 2);
}

TEST_F(FaultyRegistry, TooManyRequestsBeyondTheRetriesIsAnError) {
  start({"--fail-429", "100", "--retry-after", "0"});
  if (HasFatalFailure()) return;
  options_.max_retries = 2;
  auto src = source(proxy_->addr(), "kiln-test/small", options_);
  auto m = src->manifest("1");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("HTTP 429"), std::string::npos) << m.error().message;
  EXPECT_EQ(stat("served_429"), 3);
}

TEST_F(FaultyRegistry, BlobRedirectIsFollowedWithoutTheRegistrysAuthorization) {
  // Token mode upstream: every registry request carries a Bearer token, which must not
  // reach the "blob storage" on the proxy's other port.
  start({"--redirect-blobs"}, {"--token", "--token-user", "pusher:pw"}, {"--dest-creds", "pusher:pw"});
  if (HasFatalFailure()) return;
  auto src = source(proxy_->addr(), "kiln-test/small", options_);
  auto m = src->manifest("1");
  ASSERT_TRUE(m) << m.error().message;
  expect_blobs_verify(*src, m->bytes);
  EXPECT_EQ(stat("redirects"), 3);
  EXPECT_EQ(stat("storage_requests"), 3);
  EXPECT_EQ(stat("auth_leaks"), 0);
}

TEST_F(FaultyRegistry, StalledBlobIsResumedWithRange) {
  start({"--stall-blobs", "1", "--stall-after", "20000", "--stall-seconds", "30"});
  if (HasFatalFailure()) return;
  auto src = source(proxy_->addr(), "kiln-test/small", options_);
  std::string digest;
  std::filesystem::path dest;
  auto r = fetch_big_layer(*src, &digest, &dest);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*sha256_file(dest), digest);
  EXPECT_EQ(stat("stalls"), 1);
  EXPECT_EQ(stat("range_requests"), 1);
}

TEST_F(FaultyRegistry, StalledBlobFromAServerIgnoringRangeRestarts) {
  start({"--stall-blobs", "1", "--stall-after", "20000", "--stall-seconds", "30", "--ignore-range"});
  if (HasFatalFailure()) return;
  auto src = source(proxy_->addr(), "kiln-test/small", options_);
  std::string digest;
  std::filesystem::path dest;
  auto r = fetch_big_layer(*src, &digest, &dest);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*sha256_file(dest), digest) << "the 200 answer replaced the prefix, not appended to it";
}

TEST_F(FaultyRegistry, ABlobThatAlwaysStallsIsAClearTimeoutError) {
  start({"--stall-blobs", "100", "--stall-after", "20000", "--stall-seconds", "30"});
  if (HasFatalFailure()) return;
  options_.max_retries = 1;
  auto src = source(proxy_->addr(), "kiln-test/small", options_);
  std::string digest;
  std::filesystem::path dest;
  auto t0 = Clock::now();
  auto r = fetch_big_layer(*src, &digest, &dest);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::timeout) << r.error().message;
  EXPECT_NE(r.error().message.find("no data for 1 s"), std::string::npos) << r.error().message;
  // Two attempts of about 1 s each plus a 0.5 s pause, far below the proxy's 30 s stall.
  EXPECT_LT(ms_since(t0), 10000);
}

}  // namespace
}  // namespace kiln::registry_test
