#include "bench/host_usage.h"

#include "common/fs.h"
#include "common/process_list.h"

#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <string>

namespace kiln::bench {
namespace {

// "Rss:   12345 kB" -> bytes, for the line starting with `key`.
bool parse_kb_line(std::string_view line, std::string_view key, uint64_t& out) {
  if (!line.starts_with(key)) return false;
  line.remove_prefix(key.size());
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  uint64_t kb = 0;
  auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), kb);
  if (ec != std::errc() || std::string_view(end, static_cast<size_t>(line.data() + line.size() - end)) != " kB")
    return false;
  out = kb * 1024;
  return true;
}

}  // namespace

Result<ProcessMemory> process_memory(pid_t pid) {
  const auto path = "/proc/" + std::to_string(pid) + "/smaps_rollup";
  KILN_ASSIGN_OR_RETURN(auto text, fs::read_file(path, 1 << 16));
  ProcessMemory m;
  bool rss = false, pss = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    uint64_t v = 0;
    rss = parse_kb_line(line, "Rss:", m.rss) || rss;
    pss = parse_kb_line(line, "Pss:", m.pss) || pss;
    if (parse_kb_line(line, "Private_Clean:", v) || parse_kb_line(line, "Private_Dirty:", v)) m.uss += v;
    parse_kb_line(line, "Pss_File:", m.pss_file);
    pos = end + 1;
  }
  if (!rss || !pss) return make_error("{} has no Rss/Pss lines (kernel without smaps_rollup?)", path);
  return m;
}

std::vector<pid_t> child_processes(std::string_view comm_prefix) {
  std::vector<pid_t> out;
  for (const auto& child : proc::children_of(::getpid()))
    if (child.comm.starts_with(comm_prefix)) out.push_back(child.pid);
  return out;
}

uint64_t allocated_bytes(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  uint64_t total = static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return total;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) total += allocated_bytes(entry.path());
  return total;
}

}  // namespace kiln::bench
