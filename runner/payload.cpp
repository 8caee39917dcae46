#include "runner/payload.h"

#include "common/digest.h"
#include "common/digest_memo.h"
#include "common/fs.h"
#include "common/subprocess.h"
#include "image/elf_interp.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

namespace kiln::runner {
namespace {

constexpr int kMaxSymlinkDepth = 40;  // as the kernel's ELOOP limit
constexpr size_t kMaxEntries = 100000;

std::string parent_of(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == 0 ? "/" : p.substr(0, slash);
}

// Join a symlink's target with the directory holding the link; lexically normalised.
std::string resolve_link(const std::string& link_path, const std::string& target) {
  std::filesystem::path base = target.front() == '/' ? std::filesystem::path(target)
                                                     : std::filesystem::path(parent_of(link_path)) / target;
  std::string s = base.lexically_normal().string();
  if (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

bool Payload::seen(const std::string& path) {
  return !seen_.insert(path).second;
}

Result<void> Payload::add_path(const std::filesystem::path& host_path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(host_path, ec).lexically_normal().string();
  if (ec) return make_error("cannot resolve {}: {}", host_path.string(), ec.message());
  if (abs.size() > 1 && abs.back() == '/') abs.pop_back();
  return add_resolved(abs, 0);
}

// Walk `path` component by component: every symlink met on the way is added as a
// symlink entry (so the guest has the same link), then followed.
Result<void> Payload::add_resolved(const std::string& path, int depth) {
  if (depth > kMaxSymlinkDepth) return make_error("too many levels of symbolic links resolving {}", path);
  if (entries_.size() > kMaxEntries) return make_error("payload has more than {} entries", kMaxEntries);
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    std::string prefix = path.substr(0, next);
    struct stat st {};
    if (::lstat(prefix.c_str(), &st) != 0)
      return make_error("{} does not exist on the host ({})", prefix, std::strerror(errno));
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlink(prefix.c_str(), buf, sizeof buf - 1);
      if (n <= 0) return make_error("cannot read symlink {}: {}", prefix, std::strerror(errno));
      std::string target(buf, static_cast<size_t>(n));
      if (!seen(prefix)) entries_.push_back({PayloadEntry::Kind::symlink, prefix, target, 0777, 0});
      std::string rest = next < path.size() ? path.substr(next) : "";
      return add_resolved(resolve_link(prefix, target) + rest, depth + 1);
    }
    if (next == path.size()) {
      if (S_ISREG(st.st_mode)) {
        if (!seen(prefix))
          entries_.push_back({PayloadEntry::Kind::file, prefix, "", static_cast<uint32_t>(st.st_mode & 07777),
                              static_cast<uint64_t>(st.st_size)});
        return {};
      }
      if (S_ISDIR(st.st_mode)) return add_tree(prefix, depth);
      return make_error("{} is neither a regular file, a directory nor a symlink", prefix);
    }
    pos = next + 1;
  }
  return {};
}

Result<void> Payload::add_tree(const std::string& dir, int depth) {
  if (!seen(dir)) {
    struct stat st {};
    ::stat(dir.c_str(), &st);
    entries_.push_back({PayloadEntry::Kind::directory, dir, "", static_cast<uint32_t>(st.st_mode & 07777), 0});
  }
  std::error_code ec;
  std::vector<std::string> children;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) children.push_back(e.path().string());
  if (ec) return make_error("cannot list {}: {}", dir, ec.message());
  std::sort(children.begin(), children.end());
  for (const auto& c : children) KILN_TRY(add_resolved(c, depth));
  return {};
}

Result<std::vector<std::string>> parse_loader_list(const std::string& output, const std::string& exe) {
  std::vector<std::string> libs;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    line = line.substr(first);
    std::string path;
    if (auto arrow = line.find(" => "); arrow != std::string::npos) {
      std::string rhs = line.substr(arrow + 4);
      if (rhs.rfind("not found", 0) == 0)
        return make_error("{} needs {}, which the host's dynamic loader cannot find: fix the library path on the host",
                          exe, line.substr(0, arrow));
      path = rhs.substr(0, rhs.find(" ("));
    } else if (line.front() == '/') {
      path = line.substr(0, line.find(" ("));  // the interpreter itself
    } else {
      continue;  // linux-vdso.so.1 and friends live in the kernel
    }
    if (!path.empty() && path.front() == '/') libs.push_back(path);
  }
  return libs;
}

std::optional<std::string> Payload::elf_interpreter_of(const std::string& exe) const {
  auto it = elf_interpreters_.find(exe);
  if (it == elf_interpreters_.end()) return std::nullopt;
  return it->second;
}

Result<void> Payload::add_executable_with_closure(const std::filesystem::path& exe, int depth) {
  const size_t first = entries_.size();
  auto added = add_closure(exe, depth);
  for (size_t i = first; i < entries_.size(); ++i) entries_[i].closure = true;
  return added;
}

Result<void> Payload::add_closure(const std::filesystem::path& exe, int depth) {
  KILN_TRY(add_path(exe));
  auto prefix = fs::read_file_prefix(exe, 256);
  if (!prefix) return prefix.take_error();
  const std::string& head = *prefix;
  if (head.starts_with("#!")) {
    // A script: ship its interpreter (and that one's closure) too.
    std::string line = head.substr(2, head.find('\n') == std::string::npos ? std::string::npos : head.find('\n') - 2);
    auto begin = line.find_first_not_of(" \t");
    if (begin == std::string::npos || line[begin] != '/' || depth > 4)
      return make_error("{}: unusable #! line", exe.string());
    std::string interpreter = line.substr(begin, line.find_first_of(" \t\r", begin) - begin);
    return add_closure(interpreter, depth + 1);
  }
  if (!head.starts_with("\x7f" "ELF"))
    return Error{fmt::format("{} is neither an ELF executable nor a #! script", exe.string()),
                 ErrorKind::not_executable};
  KILN_ASSIGN_OR_RETURN(auto interp, image::elf_interpreter(exe));
  elf_interpreters_[exe.string()] = interp.value_or("");
  if (!interp) return {};  // static executable: nothing else to load
  // Ask the host's own loader, which knows the search path, RPATH/RUNPATH and hwcaps.
  KILN_ASSIGN_OR_RETURN(auto run, run_captured({*interp, "--list", exe.string()}));
  if (run.exit_code != 0)
    return make_error("the host's dynamic loader {} could not list the libraries of {}: {}", *interp, exe.string(),
                      run.err.empty() ? run.out : run.err);
  KILN_ASSIGN_OR_RETURN(auto libs, parse_loader_list(run.out, exe.string()));
  KILN_TRY(add_path(*interp));
  for (const auto& lib : libs) {
    KILN_TRY(add_path(lib));
    std::string dir = std::filesystem::path(lib).parent_path().string();
    if (std::find(library_dirs_.begin(), library_dirs_.end(), dir) == library_dirs_.end())
      library_dirs_.push_back(std::move(dir));
  }
  return {};
}

Result<std::string> Payload::content_digest() const {
  // One line per entry, fields separated by NUL (no path holds one); file contents
  // enter as their own digest, remembered by file identity (memo_digest_file): a
  // file is read only when it changed. payload_send still checks the bytes it sends
  // against these digests, so a file rewritten after this is caught there.
  std::string text;
  std::vector<std::string> file_digests(entries_.size());
  for (size_t i = 0; i < entries_.size(); ++i) {
    const auto& e = entries_[i];
    const char* kind = e.kind == PayloadEntry::Kind::file ? "file" : e.kind == PayloadEntry::Kind::symlink ? "link" : "dir";
    if (e.kind == PayloadEntry::Kind::file) {
      auto d = memo_digest_file(e.path);
      if (!d) return with_context("digesting the payload", d.error());
      file_digests[i] = std::move(*d);
    }
    text += fmt::format("{}{}{}{}{:o}{}{}{}{}\n", kind, '\0', guest_path(e), '\0', e.mode, '\0',
                        guest_symlink_target(e), '\0', file_digests[i]);
  }
  keyed_file_digests_ = std::move(file_digests);
  return digest_bytes(text);
}

std::string Payload::guest_symlink_target(const PayloadEntry& e) const {
  if (!e.closure || e.symlink_target.empty() || e.symlink_target.front() != '/') return e.symlink_target;
  return guest_prefix_ + e.symlink_target;
}

const std::string& Payload::keyed_file_digest(size_t index) const {
  static const std::string none;
  return index < keyed_file_digests_.size() ? keyed_file_digests_[index] : none;
}

uint64_t Payload::total_bytes() const {
  uint64_t n = 0;
  for (const auto& e : entries_) n += e.size;
  return n;
}

}  // namespace kiln::runner
