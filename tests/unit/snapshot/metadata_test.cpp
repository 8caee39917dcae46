#include "snapshot/metadata.h"

#include "snapshot_test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace kiln::snapshot;
using kiln::snapshot::testing::sample_key;
using nlohmann::json;

namespace {

Metadata sample_meta() {
  Metadata m;
  m.key = sample_key();
  m.created_ns = 1714567890123456789;
  m.created = rfc3339_utc(m.created_ns);
  m.state = FileInfo{"state.bin", 123456, "00112233445566778899aabbccddeeff"};
  m.memory = FileInfo{"memory.ram", 268435456, "ffeeddccbbaa99887766554433221100"};
  return m;
}

json sample_json() { return json::parse(to_json(sample_meta())); }

// Parse `doc` and expect an error whose message contains `needle`.
void expect_rejected(const std::string& text, const std::string& needle) {
  auto r = parse_metadata(text);
  ASSERT_FALSE(r.ok()) << "accepted: " << text.substr(0, 200);
  EXPECT_NE(r.error().message.find(needle), std::string::npos)
      << "message: " << r.error().message << "\nexpected to contain: " << needle;
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << "not one line: " << r.error().message;
}

void expect_rejected(const json& doc, const std::string& needle) { expect_rejected(doc.dump(), needle); }

}  // namespace

TEST(Metadata, RoundTrips) {
  Metadata m = sample_meta();
  auto back = parse_metadata(to_json(m));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, m);

  m.parent = "abcdef0123456789abcdef0123456789";
  m.memory = FileInfo{"memory.diff", 8192, "0123456789abcdef0123456789abcdef"};
  m.layer = LayerInfo{"fixture", "feed", "redis-server --daemonize yes", 2, "aa55", FileInfo{"memory.index", 96, "beef"},
                      268435456};
  back = parse_metadata(to_json(m));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, m);
}

TEST(Metadata, HasTheDocumentedTopLevelKeys) {
  json j = sample_json();
  for (const char* key : {"format_version", "image", "image_digest", "kernel_digest", "initramfs_digest", "memory_mib",
                          "vcpus", "engine", "baked_by_version", "cmdline", "created", "created_ns", "files", "parent"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["format_version"], kFormatVersion);
  EXPECT_EQ(j["image"], "default");
  EXPECT_EQ(j["memory_mib"], 256);
  EXPECT_EQ(j["baked_by_version"], "0.1.0");
  EXPECT_TRUE(j["parent"].is_null());
  EXPECT_EQ(j["created"], "2024-05-01T12:51:30Z");
  for (const char* f : {"state", "memory"})
    for (const char* k : {"name", "size", "digest"}) EXPECT_TRUE(j["files"][f].contains(k)) << f << "." << k;
  EXPECT_EQ(j["files"]["memory"]["size"], 268435456u);
}

TEST(Metadata, FormatsRfc3339Utc) {
  EXPECT_EQ(rfc3339_utc(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(rfc3339_utc(1714567890123456789), "2024-05-01T12:51:30Z");
  EXPECT_EQ(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
}

TEST(Metadata, RejectsGarbage) {
  expect_rejected(std::string(""), "not valid JSON");
  expect_rejected(std::string("hello"), "not valid JSON");
  expect_rejected(std::string("\x00\xff\xfe garbage", 12), "not valid JSON");
  expect_rejected(std::string("[1, 2, 3]"), "must be a JSON object");
  expect_rejected(std::string("null"), "must be a JSON object");
  expect_rejected(std::string("{}"), "missing field 'format_version'");
  std::string whole = to_json(sample_meta());
  for (size_t cut : {size_t{1}, whole.size() / 3, whole.size() / 2, whole.size() - 3})
    expect_rejected(whole.substr(0, cut), "not valid JSON");
}

TEST(Metadata, RejectsDeepNestingWithoutCrashing) {
  expect_rejected(std::string(60000, '['), "not valid JSON");
  expect_rejected(std::string(30000, '[') + std::string(30000, ']'), "must be a JSON object");
}

TEST(Metadata, RejectsOversizedInput) {
  std::string big = to_json(sample_meta());
  big.insert(big.size() - 2, std::string(kMaxMetadataBytes, ' '));
  expect_rejected(big, "more than the 65536");
}

TEST(Metadata, RejectsOtherFormatVersions) {
  json j = sample_json();
  j["format_version"] = kFormatVersion + 1;
  expect_rejected(j, fmt::format("snapshot format {} is newer than this kiln understands", kFormatVersion + 1));
  j["format_version"] = 1;
  expect_rejected(j, "snapshot format 1 is older");
  j["format_version"] = 18446744073709551615ull;
  expect_rejected(j, "is newer than this kiln understands");
  j["format_version"] = 0;
  expect_rejected(j, "snapshot format 0 is older");
  j["format_version"] = -3;
  expect_rejected(j, "snapshot format -3 is older");
  j["format_version"] = "1";
  expect_rejected(j, "'format_version' must be an integer, got string");
  j["format_version"] = 1.0;
  expect_rejected(j, "'format_version' must be an integer");
  j.erase("format_version");
  expect_rejected(j, "missing field 'format_version'");
}

TEST(Metadata, RejectsWrongTypesAndRanges) {
  struct Case {
    json::json_pointer where;
    json value;
    std::string needle;
  };
  std::vector<Case> cases = {
      {json::json_pointer("/image"), 5, "'image' must be a string, got integer"},
      {json::json_pointer("/engine"), nullptr, "'engine' must be a string, got null"},
      {json::json_pointer("/memory_mib"), "256", "'memory_mib' must be an integer from 0 to 4294967295, got string"},
      {json::json_pointer("/memory_mib"), -1, "'memory_mib' must be an integer from 0 to 4294967295, got -1"},
      {json::json_pointer("/memory_mib"), 256.5, "'memory_mib' must be an integer"},
      {json::json_pointer("/memory_mib"), 4294967296ull, "got 4294967296"},
      {json::json_pointer("/vcpus"), json::array(), "'vcpus' must be an integer"},
      {json::json_pointer("/created_ns"), "now", "'created_ns' must be an integer, got string"},
      {json::json_pointer("/created_ns"), 18446744073709551615ull, "'created_ns' is out of range"},
      {json::json_pointer("/files"), "x", "'files' must be an object"},
      {json::json_pointer("/files/state"), 1, "files.state must be an object"},
      {json::json_pointer("/files/memory/size"), -5, "files.memory: field 'size' must be an integer"},
      {json::json_pointer("/files/memory/digest"), "XYZ", "not a lowercase hex digest"},
      {json::json_pointer("/files/state/name"), "../../etc/passwd", "is not a plain file name"},
      {json::json_pointer("/files/state/name"), "a/b", "is not a plain file name"},
      {json::json_pointer("/files/state/name"), "..", "is not a plain file name"},
      {json::json_pointer("/files/state/name"), "", "is not a plain file name"},
      {json::json_pointer("/files/state/name"), "memory.ram", "both name 'memory.ram'"},
      {json::json_pointer("/parent"), 7, "'parent' must be null or a string"},
      {json::json_pointer("/parent"), "../x", "is not a snapshot id"},
  };
  for (const auto& c : cases) {
    json j = sample_json();
    j[c.where] = c.value;
    SCOPED_TRACE(c.where.to_string() + " = " + c.value.dump());
    expect_rejected(j, c.needle);
  }
  for (const char* key : {"image", "kernel_digest", "cmdline", "created", "files"}) {
    json j = sample_json();
    j.erase(key);
    expect_rejected(j, std::string("missing field '") + key + "'");
  }
  json j = sample_json();
  j["files"].erase("memory");
  expect_rejected(j, "files: missing field 'memory'");
}

TEST(Metadata, AcceptsAbsentParentAndUnknownKeys) {
  json j = sample_json();
  j.erase("parent");
  j["written_by_a_future_kiln"] = {1, 2, 3};
  auto r = parse_metadata(j.dump());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->parent.has_value());
}

TEST(Metadata, SerializingInvalidUtf8NeverThrows) {
  Metadata m = sample_meta();
  m.key.cmdline = "console=\xff\xfe";
  std::string text;
  EXPECT_NO_THROW(text = to_json(m));
  auto back = parse_metadata(text);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_NE(back->key.cmdline, m.key.cmdline);  // replaced, which Store::publish detects
}
