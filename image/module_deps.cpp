#include "image/module_deps.h"

#include "common/fs.h"
#include "common/log.h"
#include "common/text.h"

#include <array>
#include <system_error>

namespace kiln::image {
namespace {

// Real files are ~200 KB (dep) and ~20 KB (builtin); the caps only stop a hostile file.
constexpr uint64_t kMaxModulesDep = 64ull << 20;
constexpr uint64_t kMaxModulesBuiltin = 16ull << 20;

constexpr std::array<std::string_view, 4> kSuffixes = {".ko", ".ko.xz", ".ko.zst", ".ko.gz"};

bool ends_with_module_suffix(std::string_view s) {
  for (auto suffix : kSuffixes)
    if (s.size() > suffix.size() && s.ends_with(suffix)) return true;
  return false;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !is_space(s[i])) ++i;
    if (i > start) words.push_back(s.substr(start, i - start));
  }
  return words;
}

// Calls f(line) for each line of text ('\n'-separated; a final line without '\n' counts).
template <typename F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// One kernel's modules.dep and modules.builtin, parsed.
struct KernelModules {
  ModuleDepTable table;
  std::unordered_set<std::string> builtin;

  bool provides(const std::string& name) const { return builtin.count(name) || table.path_by_name.count(name); }
};

Result<KernelModules> read_kernel_modules(const std::filesystem::path& modules_dir) {
  auto dep_file = modules_dir / "modules.dep";
  auto dep_text = fs::read_file(dep_file, kMaxModulesDep);
  if (!dep_text) {
    std::error_code ec;
    if (!std::filesystem::exists(dep_file, ec))
      return make_error("{} has no modules.dep; generate it with `depmod -b <root> <version>` for that kernel",
                        modules_dir.string());
    return dep_text.take_error();
  }
  KernelModules k;
  k.table = parse_modules_dep(*dep_text);
  if (k.table.skipped_lines > 0)
    log::verbose("{}: skipped {} malformed line(s)", dep_file.string(), k.table.skipped_lines);

  auto builtin_file = modules_dir / "modules.builtin";
  std::error_code ec;
  // Optional: a kernel built without modules.builtin simply has nothing we can skip.
  if (std::filesystem::exists(builtin_file, ec)) {
    KILN_ASSIGN_OR_RETURN(std::string builtin_text, fs::read_file(builtin_file, kMaxModulesBuiltin));
    k.builtin = parse_modules_builtin(builtin_text);
  }
  return k;
}

}  // namespace

std::string normalize_module_name(std::string_view name_or_path) {
  if (size_t slash = name_or_path.rfind('/'); slash != std::string_view::npos)
    name_or_path.remove_prefix(slash + 1);
  for (auto suffix : kSuffixes) {
    if (name_or_path.size() > suffix.size() && name_or_path.ends_with(suffix)) {
      name_or_path.remove_suffix(suffix.size());
      break;
    }
  }
  std::string name(name_or_path);
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

bool is_valid_module_path(std::string_view path) {
  if (path.empty() || path.front() == '/' || !ends_with_module_suffix(path)) return false;
  for (char c : path)
    if (is_space(c) || c == '\n' || c == '\0' || c == ':') return false;
  // No "." or ".." component: the path is joined to the modules directory and copied.
  std::string_view rest = path;
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return true;
}

ModuleDepTable parse_modules_dep(std::string_view text) {
  ModuleDepTable table;
  for_each_line(text, [&](std::string_view raw) {
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') return;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      ++table.skipped_lines;
      return;
    }
    std::string_view path = trim(line.substr(0, colon));
    auto words = split_words(line.substr(colon + 1));
    bool valid = is_valid_module_path(path);
    for (auto w : words) valid = valid && is_valid_module_path(w);
    if (!valid) {
      ++table.skipped_lines;
      return;
    }
    std::string name = normalize_module_name(path);
    // First entry wins, as in modprobe; a duplicate is a corrupt file, not a reason to fail.
    if (table.path_by_name.count(name) || table.deps.count(std::string(path))) {
      ++table.skipped_lines;
      return;
    }
    table.path_by_name.emplace(std::move(name), std::string(path));
    std::vector<std::string> deps;
    deps.reserve(words.size());
    for (auto w : words) deps.emplace_back(w);
    table.deps.emplace(std::string(path), std::move(deps));
  });
  return table;
}

std::unordered_set<std::string> parse_modules_builtin(std::string_view text) {
  std::unordered_set<std::string> builtin;
  for_each_line(text, [&](std::string_view raw) {
    std::string_view line = trim(raw);
    if (is_valid_module_path(line)) builtin.insert(normalize_module_name(line));
  });
  return builtin;
}

Result<std::vector<std::string>> resolve_load_order(const ModuleDepTable& table,
                                                    const std::unordered_set<std::string>& builtin,
                                                    const std::vector<std::string>& wanted, std::string_view where) {
  enum class Mark { in_progress, done };
  std::unordered_map<std::string, Mark> marks;
  std::vector<std::string> order;

  // Iterative depth-first search with post-order emission: a hostile modules.dep
  // with a very long chain must not overflow the stack.
  struct Frame {
    std::string path;
    const std::vector<std::string>* deps;  // null for a module modules.dep does not describe
    size_t next;                           // deps are visited last-to-first (modprobe's order)
  };
  auto visit = [&](const std::string& root) {
    std::vector<Frame> stack;
    auto push = [&](const std::string& path) {
      auto [it, inserted] = marks.emplace(path, Mark::in_progress);
      // Done: already emitted. In progress: a cycle; break it here.
      if (!inserted) return;
      auto deps = table.deps.find(path);
      const std::vector<std::string>* list = deps == table.deps.end() ? nullptr : &deps->second;
      stack.push_back(Frame{path, list, list ? list->size() : 0});
    };
    push(root);
    while (!stack.empty()) {
      Frame& top = stack.back();
      if (top.next > 0) {
        const std::string& dep = (*top.deps)[--top.next];
        // A dependency that is built in needs no loading (depmod never lists one, but be safe).
        if (!builtin.count(normalize_module_name(dep))) push(dep);
        continue;
      }
      marks[top.path] = Mark::done;
      order.push_back(std::move(top.path));
      stack.pop_back();
    }
  };

  for (const auto& w : wanted) {
    std::string name = normalize_module_name(w);
    // Built in wins: the kernel already has it, whatever a stale modules.dep says.
    if (builtin.count(name)) continue;
    if (auto it = table.path_by_name.find(name); it != table.path_by_name.end()) {
      visit(it->second);
    } else {
      return make_error(
          "kernel module '{}' is neither in {}/modules.dep nor built into that kernel (modules.builtin); "
          "use a guest kernel that provides it (--kernel/--modules)",
          name, where);
    }
  }
  return order;
}

Result<std::vector<std::string>> module_load_order(const std::filesystem::path& modules_dir,
                                                   const std::vector<std::string>& wanted) {
  KILN_ASSIGN_OR_RETURN(KernelModules k, read_kernel_modules(modules_dir));
  return resolve_load_order(k.table, k.builtin, wanted, modules_dir.string());
}

Result<std::vector<std::string>> guest_module_load_order(const std::filesystem::path& modules_dir) {
  KILN_ASSIGN_OR_RETURN(KernelModules k, read_kernel_modules(modules_dir));
  std::vector<std::string> wanted;
  for (const GuestModule& m : kGuestModules) {
    std::string name(m.name);
    if (!m.required && !k.provides(name)) {
      log::info("warning: the guest kernel ({}) has no {} module: the guest goes without {}", modules_dir.string(),
                name, m.purpose);
      continue;
    }
    wanted.push_back(std::move(name));
  }
  return resolve_load_order(k.table, k.builtin, wanted, modules_dir.string());
}

}  // namespace kiln::image
