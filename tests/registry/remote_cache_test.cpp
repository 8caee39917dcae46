// The remote cache against a real registry on loopback (Debian's docker-registry): a
// store's snapshots and layers pushed, pulled into another store standing for another
// machine, and what a pull refuses. The snapshots are real store entries (published by
// snapshot::Store from files written here); no VM runs: restoring a pulled snapshot is
// tests/vm/remote_cache_test.cpp's job.
#include "tests/registry/registry_fixture.h"

#include "common/digest.h"
#include "common/fs.h"
#include "common/temp_file.h"
#include "remote/artifact.h"
#include "remote/remote_cache.h"
#include "remote/store_remote.h"
#include "snapshot/store.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <random>

namespace kiln::registry_test {
namespace {

constexpr uint64_t kMemory = 8 << 20;
constexpr uint64_t kPage = 4096;

// Write `pages` pages of random bytes at the given page numbers of a sparse file of kMemory.
void write_memory(const std::filesystem::path& path, const std::vector<uint64_t>& pages, uint32_t seed) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, kMemory), 0);
  std::mt19937 rng(seed);
  std::vector<char> page(kPage);
  for (uint64_t p : pages) {
    for (char& c : page) c = static_cast<char>(rng());
    ASSERT_EQ(::pwrite(fd, page.data(), page.size(), static_cast<off_t>(p * kPage)), static_cast<ssize_t>(kPage));
  }
  ::close(fd);
}

void write_state(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

snapshot::SnapshotKey test_key(const std::string& engine) {
  snapshot::SnapshotKey k;
  k.image = "default";
  k.image_digest = "image-digest";
  k.kernel_digest = "kernel-digest";
  k.initramfs_digest = "initramfs-digest";
  k.memory_mib = kMemory >> 20;
  k.vcpus = 1;
  k.engine = engine;
  k.baked_by_version = KILN_VERSION;
  k.cmdline = "console=ttyS0";
  return k;
}

class RemoteCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string missing = missing_tools({"docker-registry", "curl"});
    if (!missing.empty()) GTEST_SKIP() << "a tool the registry tests need is missing: " << missing;
    auto dir = fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-remote-cache-test-");
    ASSERT_TRUE(dir) << dir.error().message;
    scratch_.emplace(std::move(*dir));
    write_auth("{}");
    ::setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    ::setenv("no_proxy", "127.0.0.1,localhost", 1);
    auto r = Registry::start({});
    ASSERT_TRUE(r) << r.error().message;
    registry_ = std::move(*r);
    a_.emplace(scratch_->path() / "a");
    b_.emplace(scratch_->path() / "b");
  }

  void write_auth(const std::string& json) {
    auto file = scratch_->path() / "auth.json";
    ASSERT_TRUE(fs::write_file_atomic(file, json));
    ::setenv("REGISTRY_AUTH_FILE", file.c_str(), 1);
  }

  remote::RemoteCacheOptions options(bool push, const std::string& registry = "") {
    remote::RemoteCacheOptions o;
    o.spec = (registry.empty() ? registry_->addr() : registry) + "/kiln/cache";
    o.push = push;
    o.registry.insecure_hosts = {registry.empty() ? registry_->addr() : registry};
    o.registry.timeout_s = 5;
    o.registry.max_retries = 1;
    o.registry.progress_on_terminal = false;
    return o;
  }

  remote::RemoteCache cache(const snapshot::Store& store, bool push) {
    auto c = remote::RemoteCache::open(options(push), store);
    EXPECT_TRUE(c) << c.error().message;
    return std::move(*c);
  }

  // A golden in store A, published by the store from files written here.
  snapshot::Snapshot golden(const std::string& engine = "qemu-test/tcg") {
    auto key = test_key(engine);
    auto bake = a_->begin_bake(key);
    EXPECT_TRUE(bake) << bake.error().message;
    write_state(bake->files().state, "cpu and device state of " + engine);
    write_memory(bake->files().memory, {0, 1, 7, 300, 1000, 2047}, 1);
    auto s = a_->publish(std::move(*bake), key);
    EXPECT_TRUE(s) << s.error().message;
    return *s;
  }

  // A layer over `parent` in store A: the parent's memory with pages changed and added.
  snapshot::Snapshot layer(const snapshot::Snapshot& parent, std::string_view kind) {
    snapshot::LayerKey key{parent.id(), std::string(kind), digest_bytes(std::string(kind) + parent.id()), "test"};
    auto bake = a_->begin_layer(key);
    EXPECT_TRUE(bake) << bake.error().message;
    auto from = a_->restore_files(parent, /*maps_overlays=*/false);
    EXPECT_TRUE(from) << from.error().message;
    std::filesystem::copy_file(from->memory, bake->files().memory, std::filesystem::copy_options::overwrite_existing);
    int fd = ::open(bake->files().memory.c_str(), O_WRONLY | O_CLOEXEC);
    std::string page(kPage, 'L');
    EXPECT_EQ(::pwrite(fd, page.data(), page.size(), 5 * kPage), static_cast<ssize_t>(kPage));
    EXPECT_EQ(::pwrite(fd, page.data(), page.size(), 1500 * kPage), static_cast<ssize_t>(kPage));
    ::close(fd);
    write_state(bake->files().state, "state after the layer's change");
    auto s = a_->publish_layer(std::move(*bake), key, parent, /*keep_flat=*/false);
    EXPECT_TRUE(s) << s.error().message;
    return *s;
  }

  // Blob files in the registry's storage (tests tamper with them).
  std::vector<std::filesystem::path> registry_blobs() {
    std::vector<std::filesystem::path> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(registry_->get("DIR") + "/data"))
      if (e.path().filename() == "data" && e.path().string().find("/blobs/sha256/") != std::string::npos)
        out.push_back(e.path());
    return out;
  }

  // Entries of store B's root other than the lock directory: what a failed pull left.
  std::vector<std::string> b_entries() {
    std::vector<std::string> out;
    if (!std::filesystem::exists(b_->root())) return out;
    for (const auto& e : std::filesystem::directory_iterator(b_->root()))
      if (e.path().filename() != ".locks") out.push_back(e.path().filename().string());
    return out;
  }

  std::optional<fs::TempDir> scratch_;
  std::unique_ptr<Registry> registry_;
  std::optional<snapshot::Store> a_, b_;
};

TEST_F(RemoteCacheTest, ALayerAndItsGoldenPushedFromOneStoreArePulledIntoAnEmptyOne) {
  auto g = golden();
  auto l = layer(g, snapshot::kLayerKindPayload);
  auto pushed = cache(*a_, true).push(l);
  ASSERT_TRUE(pushed) << pushed.error().message;
  EXPECT_EQ(pushed->pushed, 2);
  EXPECT_EQ(pushed->present, 0);
  EXPECT_GT(pushed->bytes, 0u);

  auto lock = b_->lock_for_id(l.id());
  ASSERT_TRUE(lock) << lock.error().message;
  auto pulled = cache(*b_, false).pull(l.id());
  ASSERT_TRUE(pulled) << pulled.error().message;
  ASSERT_TRUE(pulled->has_value());
  // What B now holds is verified in full against the same metadata A published.
  for (const auto& id : {g.id(), l.id()}) {
    auto found = b_->lookup_id(id, snapshot::VerifyLevel::full);
    ASSERT_TRUE(found.found()) << id << ": " << found.reason;
    auto original = a_->lookup_id(id);
    EXPECT_EQ(found.snapshot->meta, original.snapshot->meta);
  }
  // B restores the layer to the same memory as A.
  auto a_files = a_->restore_files(l, false);
  auto b_files = b_->restore_files(**pulled, false);
  ASSERT_TRUE(a_files && b_files);
  EXPECT_EQ(*digest_sparse_file(a_files->memory), *digest_sparse_file(b_files->memory));

  // A second push finds both there.
  auto again = cache(*a_, true).push(l);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->pushed, 0);
  EXPECT_EQ(again->present, 2);
}

TEST_F(RemoteCacheTest, ZeroPagesAreNotSent) {
  auto g = golden();
  auto pushed = cache(*a_, true).push(g);
  ASSERT_TRUE(pushed) << pushed.error().message;
  // 6 random pages (incompressible) of an 8 MiB guest, plus tar headers and the config.
  EXPECT_LT(pushed->bytes, 6 * kPage + 16 * 1024) << pushed->bytes;
}

TEST_F(RemoteCacheTest, ATamperedBlobIsRefusedNamingTheRegistryAndNothingEntersTheStore) {
  auto g = golden();
  ASSERT_TRUE(cache(*a_, true).push(g));
  bool tampered = false;
  for (const auto& blob : registry_blobs()) {
    if (std::filesystem::file_size(blob) < 4096) continue;  // the files blob, not the config
    std::fstream f(blob, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(2000);
    f.put('\x5a');
    tampered = true;
  }
  ASSERT_TRUE(tampered);
  auto lock = b_->lock_for_id(g.id());
  auto pulled = cache(*b_, false).pull(g.id());
  ASSERT_FALSE(pulled);
  EXPECT_NE(pulled.error().message.find(registry_->addr()), std::string::npos) << pulled.error().message;
  EXPECT_NE(pulled.error().message.find("refused"), std::string::npos) << pulled.error().message;
  EXPECT_FALSE(b_->lookup_id(g.id()).found());
  EXPECT_TRUE(b_entries().empty()) << b_entries().front();
}

TEST_F(RemoteCacheTest, ASnapshotOfAnotherEngineIdentityIsNeverPulled) {
  auto theirs = golden("qemu-9.9.9/devices-2/tcg");
  ASSERT_TRUE(cache(*a_, true).push(theirs));
  const std::string ours = test_key("qemu-7.2.22/devices-2/tcg").id();
  auto lock = b_->lock_for_id(ours);
  // Its key differs, so its tag does: not found.
  auto pulled = cache(*b_, false).pull(ours);
  ASSERT_TRUE(pulled) << pulled.error().message;
  EXPECT_FALSE(pulled->has_value());
  // A registry whose tag for our key points at their snapshot is refused by the config check.
  auto client = image::make_registry_client(registry_->addr(), "kiln/cache", options(true).registry);
  ASSERT_TRUE(client);
  auto manifest = (*client)->manifest(remote::tag_for(theirs.id()));
  ASSERT_TRUE(manifest) << manifest.error().message;
  auto o = options(true).registry;
  o.push = true;
  auto pusher = image::make_registry_client(registry_->addr(), "kiln/cache", o);
  ASSERT_TRUE((*pusher)->push_manifest(remote::tag_for(ours), manifest->bytes, manifest->media_type));
  auto forged = cache(*b_, false).pull(ours);
  ASSERT_FALSE(forged);
  EXPECT_NE(forged.error().message.find("not " + ours.substr(0, 12)), std::string::npos) << forged.error().message;
  EXPECT_TRUE(b_entries().empty());
}

TEST_F(RemoteCacheTest, FixtureLayersArePushedOnlyWhenAsked) {
  auto g = golden();
  auto f = layer(g, snapshot::kLayerKindFixture);
  auto plain = cache(*a_, true).push(f);
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_EQ(plain->pushed, 1);  // the golden
  EXPECT_EQ(plain->skipped, 1);
  auto probe = image::make_registry_client(registry_->addr(), "kiln/cache", options(false).registry);
  EXPECT_FALSE((*probe)->manifest(remote::tag_for(f.id())));

  auto o = options(true);
  o.push_fixtures = true;
  auto asked = remote::RemoteCache::open(o, *a_);
  ASSERT_TRUE(asked);
  auto pushed = asked->push(f);
  ASSERT_TRUE(pushed) << pushed.error().message;
  EXPECT_EQ(pushed->pushed, 1);
  EXPECT_EQ(pushed->present, 1);
}

TEST_F(RemoteCacheTest, PushingNeedsPushAccessAndTakesATokenScopedForIt) {
  auto token = Registry::start({"--token", "--token-user", "pusher:secret"});
  ASSERT_TRUE(token) << token.error().message;
  const std::string addr = (*token)->addr();
  auto g = golden();
  auto o = options(true, addr);
  // Anonymous callers get pull only.
  auto anonymous = remote::RemoteCache::open(o, *a_);
  ASSERT_TRUE(anonymous);
  auto refused = anonymous->push(g);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("credentials"), std::string::npos) << refused.error().message;
  write_auth(auth_json(addr, "pusher", "secret"));
  auto with_user = remote::RemoteCache::open(o, *a_);
  auto pushed = with_user->push(g);
  ASSERT_TRUE(pushed) << pushed.error().message;
  EXPECT_EQ(pushed->pushed, 1);
  write_auth("{}");
  auto lock = b_->lock_for_id(g.id());
  auto pulled = remote::RemoteCache::open(options(false, addr), *b_)->pull(g.id());
  ASSERT_TRUE(pulled) << pulled.error().message;
  EXPECT_TRUE(pulled->has_value());
}

TEST_F(RemoteCacheTest, ARunsRemoteThatCannotBeReachedSaysSoAndLetsTheRunBake) {
  auto g = golden();
  const std::string gone = registry_->addr();
  registry_.reset();  // stopped: connections are refused from here on
  auto o = options(false, gone);
  auto remote = remote::attach_remote_cache(*b_, o, std::chrono::seconds(5));
  ASSERT_TRUE(remote) << remote.error().message;
  ASSERT_TRUE(b_->remote());
  auto lock = b_->lock_for_id(g.id());
  EXPECT_FALSE(b_->remote()->pull(g.id()).has_value());
  // Offering a snapshot to a registry that is gone is a warning, never a failure; the
  // bounded wait at the end returns.
  b_->remote()->offer(g);
  b_->set_remote(nullptr);
  remote->reset();
  EXPECT_TRUE(b_entries().empty());
}

}  // namespace
}  // namespace kiln::registry_test
