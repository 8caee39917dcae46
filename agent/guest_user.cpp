#include "agent/guest_user.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include "agent/log.h"

namespace kiln::agent {

namespace {

constexpr size_t kMaxGroups = 64;

std::vector<std::string_view> split(std::string_view line, char sep) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  for (;;) {
    size_t next = line.find(sep, pos);
    out.push_back(line.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos));
    if (next == std::string_view::npos) return out;
    pos = next + 1;
  }
}

std::optional<uint32_t> parse_id(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX - 1) return std::nullopt;  // (uid_t)-1 means "unchanged" to setuid
  return static_cast<uint32_t>(v);
}

// Calls `fn(fields)` for each well-formed line of a colon file with at least `min_fields`.
template <typename Fn>
void for_each_entry(std::string_view text, size_t min_fields, Fn fn) {
  for (std::string_view line : split(text, '\n')) {
    if (line.empty() || line.front() == '#') continue;
    auto fields = split(line, ':');
    if (fields.size() >= min_fields && fn(fields)) return;
  }
}

std::string find_user(std::string_view who, std::string_view passwd, GuestUser& out) {
  const std::optional<uint32_t> wanted_uid = parse_id(who);
  bool found = false;
  for_each_entry(passwd, 7, [&](const std::vector<std::string_view>& f) {
    auto uid = parse_id(f[2]);
    auto gid = parse_id(f[3]);
    if (!uid || !gid) return false;
    if (wanted_uid ? *uid != *wanted_uid : f[0] != who) return false;
    out.uid = *uid;
    out.gid = *gid;
    out.name = std::string(f[0]);
    out.home = f[5].empty() ? "/" : std::string(f[5]);
    found = true;
    return true;
  });
  if (found) return {};
  if (!wanted_uid) return cat("no user '", who, "' in the guest's /etc/passwd");
  out.uid = *wanted_uid;  // a bare uid needs no entry, as in a container runtime
  out.gid = 0;
  out.home = "/";
  return {};
}

std::string find_group(std::string_view which, std::string_view group, GuestUser& out) {
  if (auto gid = parse_id(which)) {
    out.gid = *gid;
    return {};
  }
  bool found = false;
  for_each_entry(group, 3, [&](const std::vector<std::string_view>& f) {
    auto gid = parse_id(f[2]);
    if (!gid || f[0] != which) return false;
    out.gid = *gid;
    found = true;
    return true;
  });
  return found ? std::string() : cat("no group '", which, "' in the guest's /etc/group");
}

void add_supplementary_groups(std::string_view group, GuestUser& out) {
  out.groups = {out.gid};
  if (out.name.empty()) return;
  for_each_entry(group, 4, [&](const std::vector<std::string_view>& f) {
    auto gid = parse_id(f[2]);
    if (!gid || *gid == out.gid) return false;
    for (std::string_view member : split(f[3], ','))
      if (member == out.name && out.groups.size() < kMaxGroups) out.groups.push_back(*gid);
    return false;
  });
}

std::string read_text(const char* path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string resolve_guest_user(std::string_view spec, std::string_view passwd, std::string_view group,
                               GuestUser& out) {
  out = GuestUser{};
  const size_t colon = spec.find(':');
  const std::string_view who = spec.substr(0, colon);
  if (who.empty()) return cat("user '", spec, "' names no user");
  if (auto e = find_user(who, passwd, out); !e.empty()) return e;
  if (colon != std::string_view::npos) {
    std::string_view which = spec.substr(colon + 1);
    if (which.empty()) return cat("user '", spec, "' names no group after ':'");
    if (auto e = find_group(which, group, out); !e.empty()) return e;
    out.groups = {out.gid};  // an explicit group replaces the user's own groups
    return {};
  }
  add_supplementary_groups(group, out);
  return {};
}

std::string resolve_guest_user(std::string_view spec, GuestUser& out) {
  return resolve_guest_user(spec, read_text("/etc/passwd"), read_text("/etc/group"), out);
}

}  // namespace kiln::agent
