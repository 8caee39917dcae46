// The pool's messages: a take round-trips; what another process sends is checked field
// by field; the key changes with anything a VM depends on, and with the files' identity.
#include "runner/pool_protocol.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using namespace kiln::runner::pool;
namespace stdfs = std::filesystem;

namespace {

PoolRequest sample() {
  PoolRequest r;
  r.engine = "qemu";
  r.engine_identity = "qemu-7.2.0/devices-2/tcg";
  r.accel = "tcg";
  r.spec.kernel = "/cache/kernels/vmlinuz";
  r.spec.initramfs = "/cache/initramfs/x.cpio";
  r.spec.cmdline = "console=ttyS0 kiln.image=vda";
  r.spec.memory_mib = 256;
  r.spec.vcpus = 1;
  r.spec.disks = {kiln::vmm::DiskSpec{"/cache/images/disks/a.sqfs", true}};
  r.files.state = "/cache/snapshots/abc/state.bin";
  r.files.memory = "/cache/snapshots/abc/memory.flat";
  r.files_identity = "1:2:3:4.000000005:6.000000007 8:9:10:11.000000012:13.000000014";
  r.label = "abc";
  return r;
}

// A layer of the kvm engine: the golden's memory with the layers' pages over it.
PoolRequest kvm_sample() {
  PoolRequest r = sample();
  r.engine = "kvm";
  r.engine_identity = "kvm-0.1.0/devices-2/AuthenticAMD";
  r.accel = "kvm";
  r.files.state = "/cache/snapshots/layer/state.bin";
  r.files.memory = "/cache/snapshots/golden/memory.ram";
  r.files.overlays = {kiln::vmm::MemoryOverlay{"/cache/snapshots/layer/memory.diff", {}}};
  return r;
}

std::string with(const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(encode_take(sample()));
  edit(j);
  return j.dump();
}

}  // namespace

TEST(PoolProtocol, ATakeRoundTrips) {
  auto decoded = decode_take(encode_take(sample()));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->key(), sample().key());
  EXPECT_EQ(decoded->label, "abc");
  EXPECT_EQ(decoded->spec.disks, sample().spec.disks);
  EXPECT_EQ(message_op(encode_take(sample())).value(), "take");
}

TEST(PoolProtocol, AKvmTakeCarriesTheOverlayFilesButNotTheirExtents) {
  PoolRequest sent = kvm_sample();
  sent.files.overlays[0].extents = {kiln::vmm::MemoryExtent{0, 0, 4096}};
  auto decoded = decode_take(encode_take(sent));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->engine, "kvm");
  ASSERT_EQ(decoded->files.overlays.size(), 1u);
  EXPECT_EQ(decoded->files.overlays[0].file, "/cache/snapshots/layer/memory.diff");
  EXPECT_TRUE(decoded->files.overlays[0].extents.empty()) << "the worker reads them from the store";
  EXPECT_EQ(decoded->key(), kvm_sample().key());
}

TEST(PoolProtocol, TheKeyHoldsWhatAVmDependsOnButNotTheLabel) {
  const std::string key = sample().key();
  auto changed = [&](const std::function<void(PoolRequest&)>& edit) {
    PoolRequest r = sample();
    edit(r);
    return r.key() != key;
  };
  EXPECT_FALSE(changed([](PoolRequest& r) { r.label = "other"; }));
  EXPECT_TRUE(changed([](PoolRequest& r) { r.engine_identity = "qemu-8.0.0/devices-2/tcg"; }));
  EXPECT_TRUE(changed([](PoolRequest& r) { r.spec.memory_mib = 512; }));
  EXPECT_TRUE(changed([](PoolRequest& r) { r.spec.cmdline += " x"; }));
  EXPECT_TRUE(changed([](PoolRequest& r) { r.spec.disks.clear(); }));
  EXPECT_TRUE(changed([](PoolRequest& r) { r.files.memory = "/elsewhere"; }));
  EXPECT_TRUE(changed([](PoolRequest& r) { r.files_identity = "another inode"; }));
  EXPECT_TRUE(changed([](PoolRequest& r) { r.engine = "kvm"; }));
  EXPECT_TRUE(changed([](PoolRequest& r) { r.files.overlays.push_back({"/cache/snapshots/l/memory.diff", {}}); }));
}

TEST(PoolProtocol, BadTakesAreRefusedNamingTheField) {
  auto refused = [](const std::string& message, const std::string& needle) {
    auto r = decode_take(message);
    ASSERT_FALSE(r.ok()) << message;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  refused("[1,2]", "not a JSON object");
  refused("{\"op\":", "not valid JSON");
  refused(with([](auto& j) { j.erase("kernel"); }), "\"kernel\" is missing");
  refused(with([](auto& j) { j["kernel"] = "relative/vmlinuz"; }), "not an absolute path");
  refused(with([](auto& j) { j["accel"] = "hvf"; }), "neither kvm nor tcg");
  refused(with([](auto& j) { j["engine_name"] = "firecracker"; }), "neither qemu nor kvm");
  refused(with([](auto& j) { j["kiln"] = "0.0.0-other"; }), "the run is kiln 0.0.0-other");
  refused(with([](auto& j) { j.erase("kiln"); }), "\"kiln\" is missing");
  refused(with([](auto& j) { j["overlays"] = nlohmann::json::array({"/a"}); }), "overlays for the qemu engine");
  refused(with([](auto& j) {
            j["engine_name"] = "kvm";
            j["accel"] = "kvm";
            j["overlays"] = nlohmann::json::array({"relative/memory.diff"});
          }),
          "not an absolute path");
  refused(with([](auto& j) {
            j["engine_name"] = "kvm";
            j["accel"] = "kvm";
            j["overlays"] = nlohmann::json::array({"/1", "/2", "/3", "/4", "/5"});
          }),
          "'overlays'");
  refused(with([](auto& j) { j["engine_name"] = "kvm"; }), "the kvm engine with accel 'tcg'");
  refused(with([](auto& j) { j["memory_mib"] = -1; }), "\"memory_mib\" is negative");
  refused(with([](auto& j) { j["vcpus"] = 1000; }), "\"vcpus\" is 1000");
  refused(with([](auto& j) { j["disks"] = nlohmann::json::array({1, 2, 3, 4, 5}); }), "'disks'");
  refused(with([](auto& j) { j["disks"][0]["read_only"] = "yes"; }), "read_only");
  refused(with([](auto& j) { j["cmdline"] = std::string(70000, 'x'); }), "kiln reads at most");
  EXPECT_FALSE(message_op(R"({"op":"shutdown"})").ok());
}

TEST(PoolProtocol, StatusRoundTrips) {
  PoolStatus s;
  s.pid = 42;
  s.uptime_s = 7;
  s.hits = 3;
  s.misses = 1;
  s.ready = 2;
  s.lent = 1;
  s.max_ready = 8;
  s.pools = {PoolStats{"abc", 2, 3, 1}};
  auto back = decode_status(encode_status(s));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->pid, 42);
  EXPECT_EQ(back->hits, 3u);
  ASSERT_EQ(back->pools.size(), 1u);
  EXPECT_EQ(back->pools[0].label, "abc");
}

TEST(PoolProtocol, ReplacingASnapshotFileChangesItsIdentity) {
  auto dir = stdfs::temp_directory_path() / ("kiln-pool-test-" + std::to_string(::getpid()));
  stdfs::create_directories(dir);
  kiln::vmm::SnapshotFiles files{dir / "state.bin", dir / "memory.flat", {}};
  std::ofstream(files.state) << "state";
  std::ofstream(files.memory) << "memory";
  auto before = files_identity(files);
  ASSERT_TRUE(before.ok()) << before.error().message;
  EXPECT_EQ(files_identity(files).value(), *before);
  stdfs::remove(files.memory);
  std::ofstream(files.memory) << "memory";  // same content, a new file
  EXPECT_NE(files_identity(files).value(), *before);
  const auto with_memory = *files_identity(files);
  files.overlays.push_back({dir / "memory.diff", {}});
  EXPECT_FALSE(files_identity(files).ok()) << "a missing overlay has no identity";
  std::ofstream(files.overlays[0].file) << "pages";
  EXPECT_NE(files_identity(files).value(), with_memory) << "an overlay is part of the identity";
  files.overlays.clear();
  stdfs::remove(files.memory);
  EXPECT_FALSE(files_identity(files).ok()) << "a removed file has no identity";
  stdfs::remove_all(dir);
}
