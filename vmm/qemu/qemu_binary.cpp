#include "vmm/qemu/qemu_binary.h"

#include "common/clock.h"
#include "common/fs.h"
#include "common/subprocess.h"
#include "common/unique_fd.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace kiln::vmm::qemu {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kQemuName = "qemu-system-x86_64";
constexpr size_t kMaxCacheBytes = 256 * 1024;
constexpr size_t kMaxCacheEntries = 64;

std::filesystem::path cache_file() { return fs::cache_root() / "host" / "qemu-version.json"; }

/// `binary --version`, bounded in time and size: $KILN_QEMU may point at anything.
Result<std::string> run_version(const std::filesystem::path& binary) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return make_error("pipe: {}", std::strerror(errno));
  UniqueFd read_end(p[0]), write_end(p[1]);
  SpawnOptions options;
  options.stdout_fd = write_end.get();
  options.own_process_group = false;
  KILN_ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::spawn({binary.string(), "--version"}, options));
  write_end.reset();
  std::string out;
  const Deadline deadline = deadline_after(10s);
  for (;;) {
    pollfd pfd{read_end.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, poll_timeout_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return make_error("{} --version did not finish within 10 s: is it really qemu?", binary.string());
    char buf[4096];
    ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.size() < 64 * 1024) out.append(buf, static_cast<size_t>(n));
  }
  int status = child.wait();
  if (status != 0)
    return make_error("{} --version {}: is it a working qemu?", binary.string(), describe_wait_status(status));
  return out;
}

}  // namespace

Result<std::filesystem::path> find_qemu_binary() {
  if (const char* env = std::getenv("KILN_QEMU"); env && *env) {
    std::filesystem::path p = std::filesystem::absolute(env);
    if (!fs::is_executable_file(p))
      return make_error("KILN_QEMU={} is not an executable file: point it at qemu-system-x86_64 or unset it", env);
    return p;
  }
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    std::filesystem::path candidate = std::filesystem::absolute(std::filesystem::path(dir) / kQemuName);
    if (fs::is_executable_file(candidate)) return candidate;
  }
  return make_error("{} not found: install qemu-system-x86 (scripts/bootstrap does), or set KILN_QEMU", kQemuName);
}

std::optional<std::string> parse_qemu_version(std::string_view text) {
  constexpr std::string_view marker = "version ";
  size_t at = text.find(marker);
  if (at == std::string_view::npos) return std::nullopt;
  at += marker.size();
  size_t end = at;
  while (end < text.size() && ((text[end] >= '0' && text[end] <= '9') || text[end] == '.')) ++end;
  if (end == at || text[at] == '.') return std::nullopt;
  return std::string(text.substr(at, end - at));
}

Result<std::string> qemu_version(const std::filesystem::path& binary) {
  struct stat st {};
  if (::stat(binary.c_str(), &st) != 0)
    return make_error("cannot stat {}: {}", binary.string(), std::strerror(errno));
  const int64_t size = st.st_size;
  const int64_t mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  const std::string key = binary.string();

  // The cache is a hint: anything wrong with it (missing, garbage, hand-edited) means re-ask qemu.
  json cache = json::object();
  if (auto text = fs::read_file(cache_file(), kMaxCacheBytes)) {
    json parsed = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object()) cache = std::move(parsed);
  }
  if (auto it = cache.find(key); it != cache.end() && it->is_object()) {
    const json& e = *it;
    auto num = [&e](const char* k) {
      auto f = e.find(k);
      return f != e.end() && f->is_number_integer() ? f->get<int64_t>() : int64_t{-1};
    };
    auto ver = e.find("version");
    if (num("size") == size && num("mtime_ns") == mtime_ns && ver != e.end() && ver->is_string() &&
        parse_qemu_version("version " + ver->get<std::string>()) == ver->get<std::string>())
      return ver->get<std::string>();
  }

  KILN_ASSIGN_OR_RETURN(std::string out, run_version(binary));
  auto version = parse_qemu_version(out);
  if (!version)
    return make_error("cannot find a version number in the output of {} --version ('{}'): is it qemu?",
                      binary.string(), out.substr(0, 200));
  if (cache.size() >= kMaxCacheEntries) cache = json::object();
  cache[key] = {{"size", size}, {"mtime_ns", mtime_ns}, {"version", *version}};
  // Best effort: a read-only cache only costs the subprocess next time.
  if (fs::make_dirs(cache_file().parent_path()))
    (void)fs::write_file_atomic(cache_file(), cache.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  return *version;
}

}  // namespace kiln::vmm::qemu
