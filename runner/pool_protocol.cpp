#include "runner/pool_protocol.h"

#include "common/digest.h"
#include "common/fs.h"
#include "image/oci/json_fields.h"

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

Result<std::string> file_identity(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return make_error("cannot stat {}: {}", path.string(), std::strerror(errno));
  return fmt::format("{}:{}:{}:{}.{:09}:{}.{:09}", st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

json request_json(const PoolRequest& r) {
  json disks = json::array();
  for (const auto& d : r.spec.disks) disks.push_back({{"image", d.image.string()}, {"read_only", d.read_only}});
  return {{"engine", r.engine_identity},
          {"accel", r.accel},
          {"kernel", r.spec.kernel.string()},
          {"initramfs", r.spec.initramfs.string()},
          {"cmdline", r.spec.cmdline},
          {"memory_mib", r.spec.memory_mib},
          {"vcpus", r.spec.vcpus},
          {"disks", std::move(disks)},
          {"state", r.files.state.string()},
          {"memory", r.files.memory.string()},
          {"identity", r.files_identity}};
}

Result<std::string> text(const json& j, const char* name) { return json_fields::string_field(j, name, true); }

Result<uint64_t> number(const json& j, const char* name, uint64_t max) { return json_fields::uint_field(j, name, max); }

Result<json> parse(const std::string& message) {
  return json_fields::parse_object(message, kMaxMessageBytes, "the pool message");
}

}  // namespace

std::string PoolRequest::key() const { return request_json(*this).dump(); }

Result<std::string> files_identity(const vmm::SnapshotFiles& files) {
  KILN_ASSIGN_OR_RETURN(auto state, file_identity(files.state));
  KILN_ASSIGN_OR_RETURN(auto memory, file_identity(files.memory));
  return state + " " + memory;
}

std::string encode_take(const PoolRequest& request) {
  json j = request_json(request);
  j["op"] = "take";
  j["label"] = request.label;
  return j.dump();
}

Result<PoolRequest> decode_take(const std::string& message) {
  KILN_ASSIGN_OR_RETURN(json j, parse(message));
  PoolRequest r;
  KILN_ASSIGN_OR_RETURN(r.engine_identity, text(j, "engine"));
  KILN_ASSIGN_OR_RETURN(r.accel, text(j, "accel"));
  if (r.accel != "kvm" && r.accel != "tcg") return make_error("pool message: accel '{}' is neither kvm nor tcg", r.accel);
  KILN_ASSIGN_OR_RETURN(auto kernel, text(j, "kernel"));
  KILN_ASSIGN_OR_RETURN(auto initramfs, text(j, "initramfs"));
  r.spec.kernel = kernel;
  r.spec.initramfs = initramfs;
  KILN_ASSIGN_OR_RETURN(r.spec.cmdline, text(j, "cmdline"));
  KILN_ASSIGN_OR_RETURN(auto memory_mib, number(j, "memory_mib", 1u << 20));
  KILN_ASSIGN_OR_RETURN(auto vcpus, number(j, "vcpus", 255));
  r.spec.memory_mib = static_cast<uint32_t>(memory_mib);
  r.spec.vcpus = static_cast<uint32_t>(vcpus);
  auto disks = j.find("disks");
  if (disks == j.end() || !disks->is_array() || disks->size() > vmm::kMaxDisks)
    return make_error("pool message: 'disks' is missing or holds more than {}", vmm::kMaxDisks);
  for (const auto& d : *disks) {
    if (!d.is_object()) return make_error("pool message: a disk is not an object");
    KILN_ASSIGN_OR_RETURN(auto image, text(d, "image"));
    auto ro = d.find("read_only");
    if (ro == d.end() || !ro->is_boolean()) return make_error("pool message: a disk's read_only is not a boolean");
    r.spec.disks.push_back(vmm::DiskSpec{image, ro->get<bool>()});
  }
  KILN_ASSIGN_OR_RETURN(auto state, text(j, "state"));
  KILN_ASSIGN_OR_RETURN(auto memory, text(j, "memory"));
  r.files.state = state;
  r.files.memory = memory;
  KILN_ASSIGN_OR_RETURN(r.files_identity, text(j, "identity"));
  KILN_ASSIGN_OR_RETURN(r.label, text(j, "label"));
  for (const auto* p : {&r.spec.kernel, &r.spec.initramfs, &r.files.state, &r.files.memory})
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
  KILN_ASSIGN_OR_RETURN(json j, parse(message));
  PoolStatus s;
  constexpr uint64_t kBig = uint64_t{1} << 53;
  KILN_ASSIGN_OR_RETURN(auto pid, number(j, "pid", kBig));
  KILN_ASSIGN_OR_RETURN(auto uptime, number(j, "uptime_s", kBig));
  s.pid = static_cast<int64_t>(pid);
  s.uptime_s = static_cast<int64_t>(uptime);
  KILN_ASSIGN_OR_RETURN(s.hits, number(j, "hits", kBig));
  KILN_ASSIGN_OR_RETURN(s.misses, number(j, "misses", kBig));
  KILN_ASSIGN_OR_RETURN(s.ready, number(j, "ready", kBig));
  KILN_ASSIGN_OR_RETURN(s.lent, number(j, "lent", kBig));
  KILN_ASSIGN_OR_RETURN(s.max_ready, number(j, "max_ready", kBig));
  auto pools = j.find("pools");
  if (pools == j.end() || !pools->is_array()) return make_error("pool status: 'pools' is not a list");
  for (const auto& p : *pools) {
    PoolStats stats;
    KILN_ASSIGN_OR_RETURN(stats.label, text(p, "label"));
    KILN_ASSIGN_OR_RETURN(stats.ready, number(p, "ready", kBig));
    KILN_ASSIGN_OR_RETURN(stats.hits, number(p, "hits", kBig));
    KILN_ASSIGN_OR_RETURN(stats.misses, number(p, "misses", kBig));
    s.pools.push_back(std::move(stats));
  }
  return s;
}

Result<std::string> message_op(const std::string& message) {
  KILN_ASSIGN_OR_RETURN(json j, parse(message));
  KILN_ASSIGN_OR_RETURN(auto op, text(j, "op"));
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
