#include "common/process_list.h"

#include "common/fs.h"

#include <charconv>
#include <filesystem>
#include <string_view>

namespace kiln::proc {
namespace {

bool parse_pid(std::string_view s, pid_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// "<pid> (<comm>) <state> <ppid> ...": the command name may itself hold spaces and
// parentheses, so it runs from the first '(' to the last ')'.
bool parse_stat(std::string_view stat, ProcessInfo& info, pid_t& ppid) {
  const size_t open = stat.find('(');
  const size_t close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open || close + 4 > stat.size())
    return false;
  info.comm = std::string(stat.substr(open + 1, close - open - 1));
  info.state = stat[close + 2];
  std::string_view rest = stat.substr(close + 4);  // past ") S "
  rest = rest.substr(0, rest.find(' '));
  return parse_pid(rest, ppid);
}

}  // namespace

std::vector<ProcessInfo> children_of(pid_t parent) {
  std::vector<ProcessInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    ProcessInfo info;
    if (!parse_pid(entry.path().filename().string(), info.pid)) continue;
    auto stat = fs::read_file(entry.path() / "stat", 4096);
    pid_t ppid = -1;
    if (stat && parse_stat(*stat, info, ppid) && ppid == parent) out.push_back(std::move(info));
  }
  return out;
}

}  // namespace kiln::proc
