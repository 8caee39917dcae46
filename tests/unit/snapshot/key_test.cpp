#include "snapshot/key.h"

#include "common/digest.h"

#include "snapshot_test_util.h"

#include <gtest/gtest.h>

#include <functional>
#include <set>

using kiln::snapshot::SnapshotKey;
using kiln::snapshot::testing::sample_key;

TEST(SnapshotKeyId, IsStableHex) {
  SnapshotKey a = sample_key(), b = sample_key();
  EXPECT_EQ(a.id(), b.id());
  EXPECT_EQ(a.id().size(), 32u);
  EXPECT_EQ(a.id().find_first_not_of("0123456789abcdef"), std::string::npos);
  // Pinned: snapshot directory names must not change between builds or hosts, or every
  // user's cache silently rebakes. Change this only together with the serialization tag.
  EXPECT_EQ(a.id(), "64f54e70b424fd9c9c7f2e951858f42d");
  // ...which is the digest of this canonical serialization: tagged, every field named
  // and length-prefixed, in declaration order.
  EXPECT_EQ(a.id(), kiln::digest_bytes("kiln-snapshot-key/1\n"
                                       "image=7:default\n"
                                       "image_digest=32:0123456789abcdef0123456789abcdef\n"
                                       "kernel_digest=32:11111111111111111111111111111111\n"
                                       "initramfs_digest=32:22222222222222222222222222222222\n"
                                       "memory_mib=3:256\n"
                                       "vcpus=1:1\n"
                                       "engine=14:qemu-7.2.0/tcg\n"
                                       "baked_by_version=5:0.1.0\n"
                                       "cmdline=19:console=ttyS0 quiet\n"));
}

TEST(SnapshotKeyId, ChangesWithEveryField) {
  std::vector<std::pair<const char*, std::function<void(SnapshotKey&)>>> edits = {
      {"image", [](SnapshotKey& k) { k.image = "other"; }},
      {"image_digest", [](SnapshotKey& k) { k.image_digest += "0"; }},
      {"kernel_digest", [](SnapshotKey& k) { k.kernel_digest = "x"; }},
      {"initramfs_digest", [](SnapshotKey& k) { k.initramfs_digest = ""; }},
      {"memory_mib", [](SnapshotKey& k) { k.memory_mib = 512; }},
      {"vcpus", [](SnapshotKey& k) { k.vcpus = 2; }},
      {"engine", [](SnapshotKey& k) { k.engine = "qemu-7.2.0/kvm"; }},
      {"baked_by_version", [](SnapshotKey& k) { k.baked_by_version = "0.1.1"; }},
      {"cmdline", [](SnapshotKey& k) { k.cmdline += " "; }},
  };
  std::set<std::string> ids = {sample_key().id()};
  for (auto& [field, edit] : edits) {
    SnapshotKey k = sample_key();
    edit(k);
    EXPECT_TRUE(ids.insert(k.id()).second) << "changing " << field << " did not change the id";
  }
}

TEST(SnapshotKeyId, FieldBoundariesAreUnambiguous) {
  // Moving bytes from one field to the next must not produce the same serialization.
  SnapshotKey a = sample_key(), b = sample_key();
  a.image = "ab";
  a.image_digest = "c";
  b.image = "a";
  b.image_digest = "bc";
  EXPECT_NE(a.id(), b.id());
  // Nor may a value that embeds the next field's encoding.
  SnapshotKey c = sample_key(), d = sample_key();
  c.engine = "e";
  c.baked_by_version = "v";
  d.engine = "e\nbaked_by_version=1:v";
  d.baked_by_version = "";
  EXPECT_NE(c.id(), d.id());
  // Numbers are not confused either (2,56 vs 25,6).
  SnapshotKey e = sample_key(), f = sample_key();
  e.memory_mib = 2;
  e.vcpus = 56;
  f.memory_mib = 25;
  f.vcpus = 6;
  EXPECT_NE(e.id(), f.id());
}
