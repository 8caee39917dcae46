#include "image/oci/image_config.h"
#include "image/oci/manifest.h"
#include "image/oci/media_types.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kiln::image {
namespace {

using nlohmann::json;

std::string digest_of(char c) { return "sha256:" + std::string(64, c); }

json descriptor(std::string_view type, char c, uint64_t size) {
  return {{"mediaType", type}, {"digest", digest_of(c)}, {"size", size}};
}

json oci_manifest(std::vector<json> layers) {
  return {{"schemaVersion", 2},
          {"mediaType", media::kOciManifest},
          {"config", descriptor(media::kOciConfig, 'c', 100)},
          {"layers", layers}};
}

json index_entry(char c, std::string os, std::string arch, std::string variant = "") {
  json d = descriptor(media::kOciManifest, c, 500);
  d["platform"] = {{"os", os}, {"architecture", arch}};
  if (!variant.empty()) d["platform"]["variant"] = variant;
  return d;
}

void expect_error(const Error& e, std::string_view part) {
  EXPECT_NE(e.message.find(part), std::string::npos) << e.message;
}

TEST(OciManifest, ParsesOciManifest) {
  auto m = parse_manifest(
      oci_manifest({descriptor(media::kOciLayerGzip, '1', 10), descriptor(media::kOciLayerZstd, '2', 20)}).dump());
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->media_type, media::kOciManifest);
  EXPECT_EQ(m->config.digest, digest_of('c'));
  ASSERT_EQ(m->layers.size(), 2u);
  EXPECT_EQ(m->layers[1].media_type, media::kOciLayerZstd);
  EXPECT_EQ(m->layers[1].size, 20u);
}

TEST(OciManifest, ParsesDockerV2Manifest) {
  json doc = {{"schemaVersion", 2},
              {"mediaType", media::kDockerManifest},
              {"config", descriptor(media::kDockerConfig, 'c', 7)},
              {"layers", {descriptor(media::kDockerLayerGzip, '1', 10)}}};
  auto m = parse_manifest(doc.dump());
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->media_type, media::kDockerManifest);
  EXPECT_EQ(m->layers[0].media_type, media::kDockerLayerGzip);
}

TEST(OciManifest, RefusesSchema1) {
  json doc = {{"schemaVersion", 1}, {"name", "x"}, {"fsLayers", json::array()}};
  auto m = parse_manifest(doc.dump());
  ASSERT_FALSE(m);
  expect_error(m.error(), "schema 1");
  auto k = classify_manifest({doc.dump(), std::string(media::kDockerSchema1Signed)});
  ASSERT_FALSE(k);
  expect_error(k.error(), "schema 1");
  auto k2 = classify_manifest({doc.dump(), "application/json"});
  ASSERT_FALSE(k2);
  expect_error(k2.error(), "schema 1");
}

TEST(OciManifest, RefusesUnknownMediaTypes) {
  json doc = oci_manifest({});
  doc["mediaType"] = "application/vnd.example.thing+json";
  auto k = classify_manifest({doc.dump(), ""});
  ASSERT_FALSE(k);
  expect_error(k.error(), "\"application/vnd.example.thing+json\" is not one kiln reads");
  auto m = parse_manifest(doc.dump());
  ASSERT_FALSE(m);
  expect_error(m.error(), "not an OCI or Docker v2 image manifest");

  auto layer = parse_manifest(oci_manifest({descriptor("application/x-tar-but-not", '1', 1)}).dump());
  ASSERT_FALSE(layer);
  expect_error(layer.error(), "layer 0 (sha256:1111");
  expect_error(layer.error(), "\"application/x-tar-but-not\" is not one kiln unpacks");

  json artifact = oci_manifest({});
  artifact["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json";
  auto a = parse_manifest(artifact.dump());
  ASSERT_FALSE(a);
  expect_error(a.error(), "not an image config");
}

TEST(OciManifest, RefusesForeignLayers) {
  auto m = parse_manifest(oci_manifest({descriptor(media::kDockerForeignLayer, '1', 1)}).dump());
  ASSERT_FALSE(m);
  expect_error(m.error(), "foreign");
  auto n = parse_manifest(
      oci_manifest({descriptor("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", '1', 1)}).dump());
  ASSERT_FALSE(n);
  expect_error(n.error(), "non-distributable");
  json with_urls = descriptor(media::kOciLayerGzip, '1', 1);
  with_urls["urls"] = {"https://example.com/layer"};
  auto u = parse_manifest(oci_manifest({with_urls}).dump());
  ASSERT_FALSE(u);
  expect_error(u.error(), "external URLs");
}

TEST(OciManifest, ValidatesDescriptors) {
  json bad_digest = descriptor(media::kOciLayerGzip, '1', 1);
  bad_digest["digest"] = "sha256:../../etc/passwd";
  auto a = parse_manifest(oci_manifest({bad_digest}).dump());
  ASSERT_FALSE(a);
  expect_error(a.error(), "is not sha256:<64 lowercase hex digits>");

  json negative = descriptor(media::kOciLayerGzip, '1', 1);
  negative["size"] = -5;
  auto b = parse_manifest(oci_manifest({negative}).dump());
  ASSERT_FALSE(b);
  expect_error(b.error(), "negative");

  json huge = descriptor(media::kOciLayerGzip, '1', 1);
  huge["size"] = kMaxLayerBytes + 1;
  auto c = parse_manifest(oci_manifest({huge}).dump());
  ASSERT_FALSE(c);
  expect_error(c.error(), "more than");

  json big_config = oci_manifest({});
  big_config["config"]["size"] = kMaxConfigBytes + 1;
  ASSERT_FALSE(parse_manifest(big_config.dump()));

  json no_size = descriptor(media::kOciLayerGzip, '1', 1);
  no_size.erase("size");
  auto d = parse_manifest(oci_manifest({no_size}).dump());
  ASSERT_FALSE(d);
  expect_error(d.error(), "\"size\" is missing");
}

TEST(OciManifest, BoundsDocuments) {
  std::string big(kMaxManifestBytes + 1, ' ');
  auto m = parse_manifest(big);
  ASSERT_FALSE(m);
  expect_error(m.error(), "at most");
  ASSERT_FALSE(parse_manifest("{"));
  ASSERT_FALSE(parse_manifest("[]"));
  ASSERT_FALSE(parse_index("null"));
  std::vector<json> many(kMaxLayers + 1, descriptor(media::kOciLayerGzip, '1', 1));
  auto l = parse_manifest(oci_manifest(many).dump());
  ASSERT_FALSE(l);
  expect_error(l.error(), "at most 512");
}

TEST(OciManifest, ClassifiesByBodyHeaderOrShape) {
  json idx = {{"schemaVersion", 2}, {"mediaType", media::kOciIndex}, {"manifests", json::array()}};
  EXPECT_EQ(*classify_manifest({idx.dump(), "application/vnd.oci.image.index.v1+json; charset=utf-8"}),
            ManifestKind::index);
  idx.erase("mediaType");
  EXPECT_EQ(*classify_manifest({idx.dump(), std::string(media::kDockerList)}), ManifestKind::index);
  EXPECT_EQ(*classify_manifest({idx.dump(), "application/json"}), ManifestKind::index);
  json man = oci_manifest({});
  man.erase("mediaType");
  EXPECT_EQ(*classify_manifest({man.dump(), ""}), ManifestKind::manifest);
  EXPECT_EQ(*classify_manifest({oci_manifest({}).dump(), std::string(media::kOciManifest)}), ManifestKind::manifest);
  auto mismatch = classify_manifest({oci_manifest({}).dump(), std::string(media::kDockerList)});
  ASSERT_FALSE(mismatch);
  expect_error(mismatch.error(), "but its body says");
}

TEST(OciIndex, SelectsLinuxAmd64IgnoringVariant) {
  json idx = {{"schemaVersion", 2},
              {"mediaType", media::kOciIndex},
              {"manifests",
               {index_entry('1', "linux", "arm64", "v8"), index_entry('2', "linux", "amd64", "v3"),
                index_entry('3', "windows", "amd64")}}};
  auto index = parse_index(idx.dump());
  ASSERT_TRUE(index) << index.error().message;
  auto d = select_platform(*index);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->digest, digest_of('2'));
}

TEST(OciIndex, NoMatchNamesThePlatforms) {
  json idx = {{"schemaVersion", 2},
              {"mediaType", media::kDockerList},
              {"manifests",
               {index_entry('1', "linux", "arm64", "v8"), index_entry('2', "linux", "arm", "v7"),
                index_entry('3', "linux", "arm64", "v8")}}};
  auto index = parse_index(idx.dump());
  ASSERT_TRUE(index);
  auto d = select_platform(*index);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().message, "the image has no linux/amd64 variant; it has: linux/arm/v7, linux/arm64/v8");
  auto empty = select_platform(ImageIndex{});
  ASSERT_FALSE(empty);
  expect_error(empty.error(), "empty");
}

TEST(OciIndex, KeepsRefNameAnnotations) {
  json e = descriptor(media::kOciManifest, '1', 5);
  e["annotations"] = {{"org.opencontainers.image.ref.name", "15"}, {"other", 3}};
  json idx = {{"schemaVersion", 2}, {"manifests", {e}}};
  auto index = parse_index(idx.dump());
  ASSERT_TRUE(index) << index.error().message;
  EXPECT_EQ(index->manifests[0].annotations.at("org.opencontainers.image.ref.name"), "15");
  EXPECT_FALSE(index->manifests[0].platform);
}

json config_doc() {
  return {{"architecture", "amd64"},
          {"os", "linux"},
          {"config",
           {{"Env", {"PATH=/usr/bin:/bin", "PGDATA=/var/lib/pg"}},
            {"WorkingDir", "/srv"},
            {"User", "postgres:postgres"},
            {"Entrypoint", {"docker-entrypoint.sh"}},
            {"Cmd", {"postgres"}}}},
          {"rootfs", {{"type", "layers"}, {"diff_ids", {digest_of('d'), digest_of('e')}}}}};
}

TEST(OciConfig, ParsesRunSettings) {
  auto c = parse_image_config(config_doc().dump());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->run.env, (std::vector<std::string>{"PATH=/usr/bin:/bin", "PGDATA=/var/lib/pg"}));
  EXPECT_EQ(c->run.working_dir, "/srv");
  EXPECT_EQ(c->run.user, "postgres:postgres");
  EXPECT_EQ(c->run.entrypoint, std::vector<std::string>{"docker-entrypoint.sh"});
  EXPECT_EQ(c->run.cmd, std::vector<std::string>{"postgres"});
  EXPECT_EQ(c->diff_ids.size(), 2u);
}

TEST(OciConfig, NullAndMissingSettingsAreEmpty) {
  json doc = config_doc();
  doc["config"] = {{"Env", nullptr}, {"Cmd", nullptr}};
  auto c = parse_image_config(doc.dump());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->run.env.empty());
  EXPECT_TRUE(c->run.cmd.empty());
  doc.erase("config");
  EXPECT_TRUE(parse_image_config(doc.dump()));
}

TEST(OciConfig, DiffIdsMustMatchLayers) {
  auto c = parse_image_config(config_doc().dump());
  ASSERT_TRUE(c);
  auto one = parse_manifest(oci_manifest({descriptor(media::kOciLayerGzip, '1', 1)}).dump());
  ASSERT_TRUE(one);
  auto r = check_config_matches(*c, *one);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "the image config lists 2 layer(s) (rootfs.diff_ids) but the manifest has 1");
  auto two = parse_manifest(
      oci_manifest({descriptor(media::kOciLayerGzip, '1', 1), descriptor(media::kOciLayerGzip, '2', 1)}).dump());
  EXPECT_TRUE(check_config_matches(*c, *two));
  c->architecture = "arm64";
  auto arch = check_config_matches(*c, *two);
  ASSERT_FALSE(arch);
  expect_error(arch.error(), "linux/arm64");
}

TEST(OciConfig, RefusesBadFields) {
  json doc = config_doc();
  doc["config"]["Env"] = {"NOEQUALS"};
  auto a = parse_image_config(doc.dump());
  ASSERT_FALSE(a);
  expect_error(a.error(), "KEY=VALUE");
  doc = config_doc();
  doc["config"]["Cmd"] = "postgres";
  auto b = parse_image_config(doc.dump());
  ASSERT_FALSE(b);
  expect_error(b.error(), "\"Cmd\" is not an array");
  doc = config_doc();
  doc["rootfs"]["diff_ids"] = {"md5:abc"};
  auto c = parse_image_config(doc.dump());
  ASSERT_FALSE(c);
  expect_error(c.error(), "diff_ids");
  doc = config_doc();
  doc.erase("rootfs");
  ASSERT_FALSE(parse_image_config(doc.dump()));
}

}  // namespace
}  // namespace kiln::image
