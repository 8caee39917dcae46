// The puller against real OCI layouts (written by umoci), docker archives (written from
// them) and a layout standing in for a registry with faults injected.
#include "image/oci/blob_store.h"
#include "image/oci/image_gc.h"
#include "image/oci/media_types.h"
#include "image/oci/pins.h"
#include "image/oci/pull.h"
#include "tests/unit/image/oci_test_util.h"

#include <gtest/gtest.h>

#include <set>

namespace kiln::image {
namespace {

using namespace kiln::image::testing;
namespace stdfs = std::filesystem;

class OciPull : public ::testing::Test {
 protected:
  void SetUp() override {
    KILN_REQUIRE_UMOCI();
    make_two_image_layout(dir_.path());
    options_.store_root = dir_.path() / "store";
    options_.note = [this](const std::string& line) { notes_.push_back(line); };
  }
  stdfs::path layout() const { return dir_.path() / "layout"; }
  std::string oci(const std::string& tag) const { return "oci:" + layout().string() + ":" + tag; }
  Result<ResolvedImage> pull(const std::string& ref) { return resolve_image_with(ref, options_, registry()); }
  RegistrySourceFactory registry() { return layout_registry(layout(), faults_); }
  std::set<std::string> blobs() const {
    auto list = BlobStore(options_.store_root).list();
    return {list.begin(), list.end()};
  }
  std::vector<std::string> store_files() const {  // everything in the blob directory, temp files included
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(BlobStore(options_.store_root).blob_dir(), ec))
      out.push_back(e.path().filename().string());
    return out;
  }
  std::string all_notes() const {
    std::string s;
    for (const auto& n : notes_) s += n + "\n";
    return s;
  }

  fs::TempDir dir_ = temp_dir();
  PullOptions options_;
  Faults faults_;
  std::vector<std::string> notes_;
};

TEST_F(OciPull, PullsAnOciLayoutTag) {
  auto image = pull(oci("t1"));
  ASSERT_TRUE(image) << image.error().message;
  EXPECT_EQ(image->canonical, "oci:" + layout().string() + ":t1");
  auto index = nlohmann::json::parse(read_all(layout() / "index.json"));
  EXPECT_EQ(image->manifest_digest, index["manifests"][0]["digest"]);
  ASSERT_EQ(image->layers.size(), 1u);
  EXPECT_EQ(image->layers[0].media_type, media::kOciLayerGzip);
  EXPECT_EQ(*sha256_file(image->layers[0].path), image->layers[0].digest);
  EXPECT_EQ(stdfs::file_size(image->layers[0].path), image->layers[0].size);
  EXPECT_EQ(image->config.env.back(), "GREETING=hi");
  EXPECT_EQ(image->config.working_dir, "/srv");
  EXPECT_EQ(image->config.user, "1000:1000");
  EXPECT_EQ(image->config.cmd, std::vector<std::string>{"sh"});
  // Manifest, config and layer are in the store; a pin records them.
  EXPECT_EQ(blobs(), (std::set<std::string>{image->manifest_digest, image->config_digest, image->layers[0].digest}));
  auto pin = PinStore(options_.store_root).read(image->canonical);
  ASSERT_TRUE(pin && *pin);
  EXPECT_EQ((*pin)->manifest_digest, image->manifest_digest);
  EXPECT_EQ((*pin)->layers.size(), 1u);
}

TEST_F(OciPull, TwoImagesSharingALayerStoreItOnce) {
  auto t1 = pull(oci("t1"));
  auto t2 = pull(oci("t2"));
  ASSERT_TRUE(t1 && t2);
  ASSERT_EQ(t2->layers.size(), 2u);
  EXPECT_EQ(t1->layers[0].digest, t2->layers[0].digest);
  EXPECT_EQ(t1->layers[0].path, t2->layers[0].path);
  // 2 manifests + 2 configs + 2 distinct layers, not 3.
  EXPECT_EQ(blobs().size(), 6u);
}

TEST_F(OciPull, PresentBlobsAreNotFetchedAgain) {
  std::string ref = "127.0.0.1:5000/kiln-test/x:t1";
  ASSERT_TRUE(pull(ref));
  EXPECT_EQ(faults_.blob_calls, 2);  // config and layer
  auto again = pull(ref);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(faults_.blob_calls, 2);
  EXPECT_EQ(faults_.manifest_calls, 2);  // a tag is re-checked each time
}

TEST_F(OciPull, WrongDigestIsRefetchedOnce) {
  faults_.damage = [](std::string& b) { b[b.size() / 2] ^= 1; };
  faults_.damage_count = 1;
  auto image = pull("127.0.0.1:5000/kiln-test/x:t1");
  ASSERT_TRUE(image) << image.error().message;
  EXPECT_EQ(faults_.blob_calls, 3);  // the config was damaged and fetched again, then the layer
  EXPECT_EQ(*sha256_file(BlobStore(options_.store_root).path_of(image->config_digest)), image->config_digest);
}

TEST_F(OciPull, WrongDigestTwiceIsAClearErrorAndNothingStays) {
  faults_.damage = [](std::string& b) { b[0] ^= 1; };
  faults_.damage_count = 100;
  auto image = pull("127.0.0.1:5000/kiln-test/x:t1");
  ASSERT_FALSE(image);
  EXPECT_EQ(faults_.blob_calls, 2);
  EXPECT_NE(image.error().message.find("refused after 2 attempts"), std::string::npos) << image.error().message;
  EXPECT_NE(image.error().message.find("hash to sha256:"), std::string::npos) << image.error().message;
  // Only the manifest (verified before use) is stored: no config, no temp file.
  EXPECT_EQ(store_files().size(), 1u);
  EXPECT_FALSE(*PinStore(options_.store_root).read("127.0.0.1:5000/kiln-test/x:t1"));
}

TEST_F(OciPull, TruncatedBlobIsRefused) {
  faults_.damage = [](std::string& b) { b.resize(b.size() / 2); };
  faults_.damage_count = 100;
  auto image = pull("127.0.0.1:5000/kiln-test/x:t1");
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message.find("truncated"), std::string::npos) << image.error().message;
  EXPECT_EQ(store_files().size(), 1u);
}

TEST_F(OciPull, LongerBlobIsRefused) {
  faults_.damage = [](std::string& b) { b += "extra"; };
  faults_.damage_count = 100;
  auto image = pull("127.0.0.1:5000/kiln-test/x:t1");
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message.find("more than the"), std::string::npos) << image.error().message;
}

TEST_F(OciPull, MissingTagNamesTheTags) {
  auto image = pull(oci("nope"));
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message.find("has no image tagged 'nope' (its tags: t1, t2)"), std::string::npos)
      << image.error().message;
}

TEST_F(OciPull, OtherPlatformOnlyNamesThePlatforms) {
  auto m = tagged_manifest(layout(), "t1");
  std::string manifest = m.dump();
  nlohmann::json index = {
      {"schemaVersion", 2},
      {"mediaType", media::kOciIndex},
      {"manifests",
       {{{"mediaType", media::kOciManifest},
         {"digest", add_blob(layout(), manifest)},
         {"size", manifest.size()},
         {"platform", {{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}}}},
        {{"mediaType", media::kOciManifest},
         {"digest", add_blob(layout(), manifest + " ")},
         {"size", manifest.size() + 1},
         {"platform", {{"os", "linux"}, {"architecture", "s390x"}}}}}}};
  add_tagged(layout(), "arm", std::string(media::kOciIndex), index.dump());
  auto image = pull(oci("arm"));
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message.find("no linux/amd64 variant; it has: linux/arm64/v8, linux/s390x"),
            std::string::npos)
      << image.error().message;
  // With an amd64 entry the index is followed to it.
  index["manifests"][1]["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
  index["manifests"][1]["digest"] = add_blob(layout(), manifest);
  index["manifests"][1]["size"] = manifest.size();
  add_tagged(layout(), "multi", std::string(media::kOciIndex), index.dump());
  auto multi = pull(oci("multi"));
  ASSERT_TRUE(multi) << multi.error().message;
  EXPECT_EQ(multi->manifest_digest, sha256_digest(manifest));
}

TEST_F(OciPull, UnknownMediaTypeIsRefused) {
  auto m = tagged_manifest(layout(), "t1");
  m["layers"][0]["mediaType"] = "application/vnd.example.layer.v1.squashfs";
  add_tagged(layout(), "odd", std::string(media::kOciManifest), m.dump());
  auto image = pull(oci("odd"));
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message.find("\"application/vnd.example.layer.v1.squashfs\" is not one kiln unpacks"),
            std::string::npos)
      << image.error().message;
  nlohmann::json schema1 = {{"schemaVersion", 1}, {"name", "x"}, {"fsLayers", nlohmann::json::array()}};
  add_tagged(layout(), "old", std::string(media::kDockerSchema1Signed), schema1.dump());
  auto old = pull(oci("old"));
  ASSERT_FALSE(old);
  EXPECT_NE(old.error().message.find("schema 1"), std::string::npos) << old.error().message;
}

TEST_F(OciPull, DamagedLayoutBlobIsRefused) {
  auto m = tagged_manifest(layout(), "t1");
  auto layer = layout() / "blobs" / "sha256" / m["layers"][0]["digest"].get<std::string>().substr(7);
  std::string bytes = read_all(layer);
  bytes[10] ^= 1;
  stdfs::remove(layer);
  write(layer, bytes);
  auto image = pull(oci("t1"));
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message.find("layer 1/1 of oci:"), std::string::npos) << image.error().message;
  EXPECT_NE(image.error().message.find("refused after 2 attempts"), std::string::npos);
}

TEST_F(OciPull, MovedTagIsReportedAndTheOldImageKeptUntilGc) {
  std::string ref = "127.0.0.1:5000/kiln-test/x:latest";
  faults_.map_reference = [](const std::string&) { return std::string("t1"); };
  auto first = pull(ref);
  ASSERT_TRUE(first) << first.error().message;
  faults_.map_reference = [](const std::string&) { return std::string("t2"); };
  auto second = pull(ref);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_NE(second->manifest_digest, first->manifest_digest);
  ASSERT_EQ(notes_.size(), 1u) << all_notes();
  EXPECT_EQ(notes_[0], fmt::format("{} moved from {}… to {}…", ref, first->manifest_digest.substr(0, 19),
                                   second->manifest_digest.substr(0, 19)));
  // The old image stays as name@digest while a snapshot uses it; gc then removes it
  // and its blobs but not the shared layer.
  std::string old_name = "127.0.0.1:5000/kiln-test/x@" + first->manifest_digest;
  ASSERT_EQ(find_pins(options_.store_root, old_name).size(), 1u);
  auto kept = gc_images(options_.store_root, {first->manifest_digest}, false);
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_TRUE(kept->removed.empty());
  EXPECT_EQ(find_pins(options_.store_root, old_name).size(), 1u);
  auto gc = gc_images(options_.store_root, {}, false);
  ASSERT_TRUE(gc) << gc.error().message;
  EXPECT_TRUE(find_pins(options_.store_root, old_name).empty());
  EXPECT_EQ(blobs().size(), 4u);  // the new manifest, config and two layers
  EXPECT_TRUE(BlobStore(options_.store_root).has(first->layers[0].digest, first->layers[0].size));
}

// kiln run's policy: a stored tag runs its pin with no registry round trip (one per test
// otherwise); a tag not stored yet is pulled; `always` (the bake fixture) sees a move.
TEST_F(OciPull, PullMissingUsesAStoredTagsPinWithoutAskingTheRegistry) {
  std::string ref = "127.0.0.1:5000/kiln-test/x:latest";
  faults_.map_reference = [](const std::string&) { return std::string("t1"); };
  options_.policy = PullPolicy::missing;
  auto first = pull(ref);
  ASSERT_TRUE(first) << first.error().message;
  const int calls = faults_.manifest_calls;
  EXPECT_GT(calls, 0) << "a tag not stored yet must be pulled";
  faults_.map_reference = [](const std::string&) { return std::string("t2"); };  // the tag moves
  auto again = pull(ref);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(faults_.manifest_calls, calls) << "the registry was asked for a stored tag";
  EXPECT_EQ(again->manifest_digest, first->manifest_digest);
  EXPECT_TRUE(notes_.empty()) << all_notes();
  options_.policy = PullPolicy::always;
  auto moved = pull(ref);
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_NE(moved->manifest_digest, first->manifest_digest);
  ASSERT_EQ(notes_.size(), 1u) << all_notes();
  // Then missing runs the new pin.
  options_.policy = PullPolicy::missing;
  auto after = pull(ref);
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->manifest_digest, moved->manifest_digest);
}

// A local layout is read on each run under missing (reading it costs no round trip).
TEST_F(OciPull, PullMissingStillReadsALocalLayout) {
  options_.policy = PullPolicy::missing;
  auto first = pull(oci("t1"));
  ASSERT_TRUE(first) << first.error().message;
  stdfs::remove_all(layout());
  auto again = pull(oci("t1"));  // the layout is gone: the pin, with a note saying so
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(notes_.size(), 1u) << "the layout was not read again";
}

TEST_F(OciPull, UnreachableRegistryFallsBackToThePin) {
  std::string ref = "127.0.0.1:5000/kiln-test/x:t1";
  ASSERT_TRUE(pull(ref));
  faults_.unreachable = "cannot connect to 127.0.0.1:5000";
  auto image = pull(ref);
  ASSERT_TRUE(image) << image.error().message;
  ASSERT_EQ(notes_.size(), 1u);
  EXPECT_NE(notes_[0].find("cannot connect to 127.0.0.1:5000; using the pinned sha256:"), std::string::npos)
      << notes_[0];
  auto other = pull("127.0.0.1:5000/kiln-test/x:t2");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().message, "cannot connect to 127.0.0.1:5000");
}

TEST_F(OciPull, PinnedDigestNeedsNoRegistry) {
  auto first = pull("127.0.0.1:5000/kiln-test/x:t1");
  ASSERT_TRUE(first);
  // A digest reference: resolved once through the registry, then from the pin alone.
  faults_.map_reference = [](const std::string&) { return std::string("t1"); };
  std::string by_digest = "127.0.0.1:5000/kiln-test/x@" + first->manifest_digest;
  ASSERT_TRUE(pull(by_digest));
  int calls = faults_.manifest_calls;
  faults_.unreachable = "must not be asked";
  auto again = pull(by_digest);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(faults_.manifest_calls, calls);
  EXPECT_TRUE(notes_.empty()) << all_notes();
  EXPECT_EQ(again->manifest_digest, first->manifest_digest);
}

TEST_F(OciPull, DigestMismatchFromTheSourceIsRefused) {
  faults_.map_reference = [](const std::string&) { return std::string("t1"); };
  auto image = pull("127.0.0.1:5000/kiln-test/x@sha256:" + std::string(64, '0'));
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message.find("not the sha256:0000"), std::string::npos) << image.error().message;
}

TEST_F(OciPull, OfflineUsesOnlyThePin) {
  options_.policy = PullPolicy::never;
  auto none = pull(oci("t1"));
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("--pull never"), std::string::npos) << none.error().message;
  options_.policy = PullPolicy::always;
  ASSERT_TRUE(pull("127.0.0.1:5000/kiln-test/x:t1"));
  options_.policy = PullPolicy::never;
  faults_.unreachable = "must not be asked";
  auto image = pull("127.0.0.1:5000/kiln-test/x:t1");
  ASSERT_TRUE(image) << image.error().message;
  // A blob gone from the store: offline cannot heal it and says so.
  stdfs::remove(image->layers[0].path);
  auto broken = pull("127.0.0.1:5000/kiln-test/x:t1");
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message.find("is missing from"), std::string::npos) << broken.error().message;
}

TEST_F(OciPull, RemoveKeepsABlobAnotherImageUses) {
  auto t1 = pull(oci("t1"));
  auto t2 = pull(oci("t2"));
  ASSERT_TRUE(t1 && t2);
  auto pins = find_pins(options_.store_root, oci("t2"));
  ASSERT_EQ(pins.size(), 1u);
  auto report = remove_pins(options_.store_root, pins);
  ASSERT_TRUE(report) << report.error().message;
  // t2's manifest, config and own layer go; the shared layer stays.
  EXPECT_EQ(report->removed.size(), 4u);
  EXPECT_EQ(blobs(), (std::set<std::string>{t1->manifest_digest, t1->config_digest, t1->layers[0].digest}));
  options_.policy = PullPolicy::never;
  EXPECT_TRUE(pull(oci("t1")));
  // By manifest digest.
  auto by_digest = find_pins(options_.store_root, t1->manifest_digest);
  ASSERT_EQ(by_digest.size(), 1u);
  ASSERT_TRUE(remove_pins(options_.store_root, by_digest));
  EXPECT_TRUE(blobs().empty());
}

TEST_F(OciPull, DockerArchive) {
  auto archive = dir_.path() / "img.tar";
  write_docker_archive(layout(), "t2", archive);
  auto image = pull("docker-archive:" + archive.string());
  ASSERT_TRUE(image) << image.error().message;
  ASSERT_EQ(image->layers.size(), 2u);
  EXPECT_EQ(image->layers[0].media_type, media::kDockerLayerTar);
  // The layers are the uncompressed tars: their digests are the config's diff_ids.
  auto oci_image = pull(oci("t2"));
  ASSERT_TRUE(oci_image);
  auto config = nlohmann::json::parse(read_all(BlobStore(options_.store_root).path_of(oci_image->config_digest)));
  EXPECT_EQ(image->layers[0].digest, config["rootfs"]["diff_ids"][0]);
  EXPECT_EQ(image->layers[1].digest, config["rootfs"]["diff_ids"][1]);
  EXPECT_EQ(image->config_digest, oci_image->config_digest);
  EXPECT_EQ(image->config.env, oci_image->config.env);
  // The synthesised manifest's digest is stable: a second archive of the same image
  // (other timestamps) resolves to the same digest.
  auto archive2 = dir_.path() / "img2.tar";
  write_docker_archive(layout(), "t2", archive2);
  auto again = pull("docker-archive:" + archive2.string());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->manifest_digest, image->manifest_digest);
}

TEST_F(OciPull, DockerArchiveWithSeveralImagesNamesThem) {
  auto archive = dir_.path() / "two.tar";
  write_docker_archive(layout(), "t1", archive, 2);
  auto image = pull("docker-archive:" + archive.string());
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message.find("holds 2 images (kiln-test/x:1, kiln-test/x:2)"), std::string::npos)
      << image.error().message;
}

TEST_F(OciPull, NotADockerArchive) {
  write(dir_.path() / "junk.tar", "this is not a tar file at all, not even close............");
  auto image = pull("docker-archive:" + (dir_.path() / "junk.tar").string());
  ASSERT_FALSE(image);
  auto missing = pull("docker-archive:" + (dir_.path() / "absent.tar").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("absent.tar"), std::string::npos) << missing.error().message;
}

TEST_F(OciPull, NotALayout) {
  auto image = pull("oci:" + dir_.path().string() + ":t1");
  ASSERT_FALSE(image);
  EXPECT_NE(image.error().message.find("is not an OCI image layout"), std::string::npos) << image.error().message;
}

}  // namespace
}  // namespace kiln::image
