#include "runner/pool_protocol.h"

#include "common/digest.h"
#include "common/fs.h"
#include "image/oci/json_fields.h"
#include "snapshot/digest_stamp.h"
#include "snapshot/layer_key.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace kiln::runner::pool {
namespace {

using nlohmann::json;
namespace json_fields = image::json_fields;

json request_json(const PoolRequest& r) {
  json disks = json::array();
  for (const auto& d : r.spec.disks) disks.push_back({{"image", d.image.string()}, {"read_only", d.read_only}});
  json overlays = json::array();
  for (const auto& o : r.files.overlays) overlays.push_back(o.file.string());
  return {{"engine_name", r.engine},
          {"engine", r.engine_identity},
          {"accel", r.accel},
          {"kernel", r.spec.kernel.string()},
          {"initramfs", r.spec.initramfs.string()},
          {"cmdline", r.spec.cmdline},
          {"memory_mib", r.spec.memory_mib},
          {"vcpus", r.spec.vcpus},
          {"disks", std::move(disks)},
          {"state", r.files.state.string()},
          {"memory", r.files.memory.string()},
          {"overlays", std::move(overlays)},
          {"identity", r.files_identity}};
}

}  // namespace

std::string PoolRequest::key() const { return request_json(*this).dump(); }

Result<std::string> files_identity(const vmm::SnapshotFiles& files) {
  std::string all;
  std::vector<const std::filesystem::path*> paths = {&files.state, &files.memory};
  for (const auto& o : files.overlays) paths.push_back(&o.file);
  for (const auto* p : paths) {
    auto identity = snapshot::file_identity(*p);
    if (!identity) return make_error("{} is missing or not a regular file", p->string());
    all += (all.empty() ? "" : " ") + *identity;
  }
  return all;
}

std::string encode_take(const PoolRequest& request) {
  json j = request_json(request);
  j["op"] = "take";
  j["label"] = request.label;
  j["kiln"] = KILN_VERSION;
  return j.dump();
}

Result<PoolRequest> decode_take(const std::string& message) {
  KILN_ASSIGN_OR_RETURN(json j, json_fields::parse_object(message, kMaxMessageBytes, "the pool message"));
  PoolRequest r;
  // A daemon of another kiln never serves a run (snapshots and the wire format are the version's).
  KILN_ASSIGN_OR_RETURN(auto version, json_fields::string_field(j, "kiln", true));
  if (version != KILN_VERSION) return make_error("the run is kiln {}, this pool daemon kiln {}", version, KILN_VERSION);
  KILN_ASSIGN_OR_RETURN(r.engine, json_fields::string_field(j, "engine_name", true));
  if (r.engine != "qemu" && r.engine != "kvm")
    return make_error("pool message: engine '{}' is neither qemu nor kvm", r.engine);
  KILN_ASSIGN_OR_RETURN(r.engine_identity, json_fields::string_field(j, "engine", true));
  KILN_ASSIGN_OR_RETURN(r.accel, json_fields::string_field(j, "accel", true));
  if (r.accel != "kvm" && r.accel != "tcg") return make_error("pool message: accel '{}' is neither kvm nor tcg", r.accel);
  if (r.engine == "kvm" && r.accel != "kvm") return make_error("pool message: the kvm engine with accel '{}'", r.accel);
  KILN_ASSIGN_OR_RETURN(auto kernel, json_fields::string_field(j, "kernel", true));
  KILN_ASSIGN_OR_RETURN(auto initramfs, json_fields::string_field(j, "initramfs", true));
  r.spec.kernel = kernel;
  r.spec.initramfs = initramfs;
  KILN_ASSIGN_OR_RETURN(r.spec.cmdline, json_fields::string_field(j, "cmdline", true));
  KILN_ASSIGN_OR_RETURN(auto memory_mib, json_fields::uint_field(j, "memory_mib", 1u << 20));
  KILN_ASSIGN_OR_RETURN(auto vcpus, json_fields::uint_field(j, "vcpus", 255));
  r.spec.memory_mib = static_cast<uint32_t>(memory_mib);
  r.spec.vcpus = static_cast<uint32_t>(vcpus);
  auto disks = j.find("disks");
  if (disks == j.end() || !disks->is_array() || disks->size() > vmm::kMaxDisks)
    return make_error("pool message: 'disks' is missing or holds more than {}", vmm::kMaxDisks);
  for (const auto& d : *disks) {
    if (!d.is_object()) return make_error("pool message: a disk is not an object");
    KILN_ASSIGN_OR_RETURN(auto image, json_fields::string_field(d, "image", true));
    auto ro = d.find("read_only");
    if (ro == d.end() || !ro->is_boolean()) return make_error("pool message: a disk's read_only is not a boolean");
    r.spec.disks.push_back(vmm::DiskSpec{image, ro->get<bool>()});
  }
  KILN_ASSIGN_OR_RETURN(auto state, json_fields::string_field(j, "state", true));
  KILN_ASSIGN_OR_RETURN(auto memory, json_fields::string_field(j, "memory", true));
  r.files.state = state;
  r.files.memory = memory;
  auto overlays = j.find("overlays");
  if (overlays == j.end() || !overlays->is_array() || overlays->size() > snapshot::kMaxLayerDepth)
    return make_error("pool message: 'overlays' is missing or holds more than {}", snapshot::kMaxLayerDepth);
  if (r.engine != "kvm" && !overlays->empty()) return make_error("pool message: overlays for the qemu engine");
  for (const auto& o : *overlays) {
    if (!o.is_string()) return make_error("pool message: an overlay is not a path");
    r.files.overlays.push_back(vmm::MemoryOverlay{o.get<std::string>(), {}});
  }
  KILN_ASSIGN_OR_RETURN(r.files_identity, json_fields::string_field(j, "identity", true));
  KILN_ASSIGN_OR_RETURN(r.label, json_fields::string_field(j, "label", true));
  std::vector<const std::filesystem::path*> paths = {&r.spec.kernel, &r.spec.initramfs, &r.files.state,
                                                     &r.files.memory};
  for (const auto& o : r.files.overlays) paths.push_back(&o.file);
  for (const auto& d : r.spec.disks) paths.push_back(&d.image);
  for (const auto* p : paths)
    if (!p->is_absolute()) return make_error("pool message: {} is not an absolute path", p->string());
  return r;
}

std::string encode_status(const PoolStatus& s) {
  json pools = json::array();
  for (const auto& p : s.pools)
    pools.push_back({{"label", p.label}, {"ready", p.ready}, {"hits", p.hits}, {"misses", p.misses}});
  return json{{"pid", s.pid},     {"uptime_s", s.uptime_s}, {"hits", s.hits},           {"misses", s.misses},
              {"ready", s.ready}, {"lent", s.lent},         {"max_ready", s.max_ready}, {"pools", std::move(pools)}}
      .dump();
}

Result<PoolStatus> decode_status(const std::string& message) {
  KILN_ASSIGN_OR_RETURN(json j, json_fields::parse_object(message, kMaxMessageBytes, "the pool message"));
  PoolStatus s;
  constexpr uint64_t kBig = uint64_t{1} << 53;
  KILN_ASSIGN_OR_RETURN(auto pid, json_fields::uint_field(j, "pid", kBig));
  KILN_ASSIGN_OR_RETURN(auto uptime, json_fields::uint_field(j, "uptime_s", kBig));
  s.pid = static_cast<int64_t>(pid);
  s.uptime_s = static_cast<int64_t>(uptime);
  KILN_ASSIGN_OR_RETURN(s.hits, json_fields::uint_field(j, "hits", kBig));
  KILN_ASSIGN_OR_RETURN(s.misses, json_fields::uint_field(j, "misses", kBig));
  KILN_ASSIGN_OR_RETURN(s.ready, json_fields::uint_field(j, "ready", kBig));
  KILN_ASSIGN_OR_RETURN(s.lent, json_fields::uint_field(j, "lent", kBig));
  KILN_ASSIGN_OR_RETURN(s.max_ready, json_fields::uint_field(j, "max_ready", kBig));
  auto pools = j.find("pools");
  if (pools == j.end() || !pools->is_array()) return make_error("pool status: 'pools' is not a list");
  for (const auto& p : *pools) {
    PoolStats stats;
    KILN_ASSIGN_OR_RETURN(stats.label, json_fields::string_field(p, "label", true));
    KILN_ASSIGN_OR_RETURN(stats.ready, json_fields::uint_field(p, "ready", kBig));
    KILN_ASSIGN_OR_RETURN(stats.hits, json_fields::uint_field(p, "hits", kBig));
    KILN_ASSIGN_OR_RETURN(stats.misses, json_fields::uint_field(p, "misses", kBig));
    s.pools.push_back(std::move(stats));
  }
  return s;
}

Result<std::string> message_op(const std::string& message) {
  KILN_ASSIGN_OR_RETURN(json j, json_fields::parse_object(message, kMaxMessageBytes, "the pool message"));
  KILN_ASSIGN_OR_RETURN(auto op, json_fields::string_field(j, "op", true));
  if (op != "take" && op != "status") return make_error("pool message: unknown op '{}'", op);
  return op;
}

Result<std::filesystem::path> socket_path() {
  struct stat exe {};
  if (::stat("/proc/self/exe", &exe) != 0) return make_error("cannot stat /proc/self/exe: {}", std::strerror(errno));
  std::error_code ec;
  auto exe_path = std::filesystem::read_symlink("/proc/self/exe", ec);
  const auto cache = fs::cache_root();
  const std::string hash = digest_bytes(fmt::format("{}\n{}\n{}:{}:{}.{:09}\n{}", cache.string(), exe_path.string(),
                                                    exe.st_ino, exe.st_size, exe.st_mtim.tv_sec,
                                                    exe.st_mtim.tv_nsec, KILN_VERSION))
                               .substr(0, 16);
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  auto dir = runtime && *runtime == '/' ? std::filesystem::path(runtime) / "kiln" : cache / "pool";
  auto path = dir / ("pool-" + hash + ".sock");
  if (path.native().size() >= sizeof(sockaddr_un{}.sun_path))
    return make_error("the pool socket path {} is longer than a unix socket address allows", path.string());
  return path;
}

}  // namespace kiln::runner::pool
