// How a snapshot is described in a registry (remote/artifact.h): tags, the config's
// checks against its metadata, and manifests kiln refuses.
#include "remote/artifact.h"

#include "image/oci/media_types.h"
#include "snapshot/metadata.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kiln::remote {
namespace {

snapshot::Metadata golden_meta() {
  snapshot::Metadata m;
  m.key.image = "default";
  m.key.memory_mib = 256;
  m.key.vcpus = 1;
  m.key.engine = "qemu-7.2.22/devices-2/tcg/tsc-2596000khz";
  m.key.baked_by_version = "0.1.0";
  m.created = "2026-12-05T00:00:00Z";
  m.state = {"state.bin", 100, std::string(32, 'a')};
  m.memory = {"memory.ram", 256 << 20, std::string(32, 'b')};
  return m;
}

image::Descriptor desc(std::string_view type, char digit, uint64_t size) {
  return {std::string(type), "sha256:" + std::string(64, digit), size, {}, {}};
}

TEST(Artifact, TagsAreTheIdBehindAPrefixAndOnlyHexIdsComeBack) {
  EXPECT_EQ(tag_for("0123abcd"), "kiln-0123abcd");
  EXPECT_EQ(id_from_tag("kiln-0123abcd"), "0123abcd");
  EXPECT_EQ(id_from_tag("0123abcd"), "0123abcd");
  for (const char* bad : {"", "kiln-", "kiln-XYZ", "../etc", "kiln-0123abcd:latest", "KILN-0123"})
    EXPECT_FALSE(id_from_tag(bad)) << bad;
  EXPECT_FALSE(id_from_tag("kiln-" + std::string(65, 'a')));
  // The tag of a 128-bit id stays well under the registry's 128 characters.
  EXPECT_LE(tag_for(std::string(32, 'f')).size(), 128u);
}

TEST(Artifact, AConfigRoundTripsAndIsForTheKeysId) {
  auto meta = golden_meta();
  const std::string json = snapshot::to_json(meta);
  auto c = parse_config(make_config(meta.key.id(), json));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->id, meta.key.id());
  EXPECT_EQ(c->metadata_json, json);
  EXPECT_EQ(c->meta, meta);
}

TEST(Artifact, AConfigWhoseIdIsNotItsMetadatasIsRefused) {
  auto meta = golden_meta();
  auto c = parse_config(make_config(std::string(32, 'e'), snapshot::to_json(meta)));
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("metadata is for snapshot " + meta.key.id()), std::string::npos)
      << c.error().message;
}

TEST(Artifact, AConfigThatMisstatesItsKindOrFormatIsRefused) {
  auto meta = golden_meta();
  auto doc = nlohmann::json::parse(make_config(meta.key.id(), snapshot::to_json(meta)));
  auto kind = doc;
  kind["kind"] = "payload";
  EXPECT_FALSE(parse_config(kind.dump()));
  auto version = doc;
  version["kiln_artifact"] = 2;
  auto v = parse_config(version.dump());
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("another kiln version"), std::string::npos) << v.error().message;
  auto garbled = doc;
  garbled["metadata"] = "{";
  EXPECT_FALSE(parse_config(garbled.dump()));
  EXPECT_FALSE(parse_config(std::string(kMaxConfigBytes + 1, ' ')));
}

TEST(Artifact, AManifestRoundTripsAndAnythingButOneKilnLayerIsRefused) {
  auto config = desc(kConfigMediaType, '1', 900);
  auto files = desc(kFilesMediaType, '2', 38 << 20);
  const std::string bytes = make_manifest(config, files, "abc");
  auto m = parse_artifact_manifest(bytes, "r/x:kiln-abc");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->config.digest, config.digest);
  EXPECT_EQ(m->files.size, files.size);
  auto doc = nlohmann::json::parse(bytes);
  EXPECT_EQ(doc["artifactType"], kArtifactType);

  auto image = doc;  // an ordinary container image under a kiln tag
  image["config"]["mediaType"] = image::media::kOciConfig;
  auto refused = parse_artifact_manifest(image.dump(), "r/x:kiln-abc");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("r/x:kiln-abc is not a kiln snapshot"), std::string::npos)
      << refused.error().message;
  auto two = doc;
  two["layers"].push_back(two["layers"][0]);
  EXPECT_FALSE(parse_artifact_manifest(two.dump(), "w"));
  auto huge = doc;
  huge["config"]["size"] = kMaxConfigBytes + 1;
  EXPECT_FALSE(parse_artifact_manifest(huge.dump(), "w"));
  auto digest = doc;
  digest["layers"][0]["digest"] = "sha256:../../etc";
  EXPECT_FALSE(parse_artifact_manifest(digest.dump(), "w"));
  auto index = doc;
  index["mediaType"] = image::media::kOciIndex;
  EXPECT_FALSE(parse_artifact_manifest(index.dump(), "w"));
}

}  // namespace
}  // namespace kiln::remote
