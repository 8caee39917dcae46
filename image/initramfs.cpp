#include "image/initramfs.h"

#include "common/digest.h"
#include "common/digest_memo.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/subprocess.h"
#include "common/temp_file.h"
#include "image/cpio_writer.h"
#include "image/elf_interp.h"
#include "image/module_deps.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

namespace kiln::image {
namespace {

namespace stdfs = std::filesystem;
using Kind = CpioEntry::Kind;

CpioEntry make_dir(std::string path, uint32_t mode = 0755) {
  CpioEntry e;
  e.path = std::move(path);
  e.kind = Kind::directory;
  e.mode = mode;
  return e;
}

CpioEntry make_file(std::string path, stdfs::path source, uint32_t mode) {
  CpioEntry e;
  e.path = std::move(path);
  e.kind = Kind::file;
  e.mode = mode;
  e.source = std::move(source);
  return e;
}

CpioEntry make_text(std::string path, std::string data) {
  CpioEntry e;
  e.path = std::move(path);
  e.kind = Kind::file;
  e.mode = 0644;
  e.data = std::move(data);
  return e;
}

CpioEntry make_symlink(std::string path, std::string target) {
  CpioEntry e;
  e.path = std::move(path);
  e.kind = Kind::symlink;
  e.mode = 0777;
  e.link_target = std::move(target);
  return e;
}

// The guest's name: the agent sets it at boot from /etc/hostname, and /etc/hosts resolves it.
constexpr std::string_view kHostname = "kiln";

// A TZif file (RFC 8536, version 2) for UTC: one local time type (offset 0, not DST,
// abbreviated "UTC"), no transitions and no leap seconds, so the 32-bit block and the
// 64-bit block are the same bytes; then the POSIX TZ footer for times past the data.
std::string utc_tzif() {
  auto be32 = [](std::string& out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
  };
  std::string block = "TZif2";
  block.append(15, '\0');
  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
  for (uint32_t count : {0u, 0u, 0u, 0u, 1u, 4u}) be32(block, count);
  be32(block, 0);            // the type's UT offset
  block.append(2, '\0');     // not DST; its abbreviation starts at index 0
  block.append("UTC\0", 4);  // the abbreviations
  return block + block + "\nUTC0\n";
}

// What programs expect of any Linux system (a container image has them): who root and
// nobody are, that names resolve from local files (the guest has no name server),
// localhost and the guest's own name, and UTC as local time.
std::vector<CpioEntry> system_files() {
  const std::string host(kHostname);
  return {
      make_text("etc/hostname", host + "\n"),
      make_text("etc/hosts", "127.0.0.1\tlocalhost\n"
                             "::1\tlocalhost ip6-localhost ip6-loopback\n"
                             "127.0.1.1\t" + host + "\n"),
      // Without "multi on" glibc's files lookup stops at the first line naming a host, so
      // getaddrinfo("localhost", AF_UNSPEC) would miss ::1.
      make_text("etc/host.conf", "multi on\n"),
      make_text("etc/nsswitch.conf",
                "# The guest has no name server and no directory service: every database is a local file.\n"
                "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nprotocols: files\n"
                "services: files\nethers: files\nrpc: files\nnetgroup: files\n"),
      // Empty: no name server. Resolvers that read it themselves (c-ares, Go) then find none configured.
      make_text("etc/resolv.conf", ""),
      make_text("etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
      make_text("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
      make_text("usr/share/zoneinfo/Etc/UTC", utc_tzif()),
      make_symlink("usr/share/zoneinfo/UTC", "Etc/UTC"),
      // A link, as on Debian: tools that name the zone read it from the link's target.
      make_symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
  };
}

// PID 1 runs before anything could provide a dynamic loader or libraries.
Result<void> check_agent(const stdfs::path& agent) {
  auto interp = elf_interpreter(agent);
  if (!interp) return with_context("the guest agent must be a static x86-64 executable", interp.error());
  if (interp->has_value())
    return make_error("guest agent {} is dynamically linked (interpreter {}); it runs as PID 1 with no libraries: "
                      "link it with -static",
                      agent.string(), **interp);
  return {};
}

// A dynamic busybox would fail in the guest on every applet; leaving it out is the useful answer.
bool usable_busybox(const stdfs::path& busybox) {
  auto interp = elf_interpreter(busybox);
  if (!interp) {
    log::info("warning: leaving busybox out of the guest: {}", interp.error().message);
    return false;
  }
  if (interp->has_value()) {
    log::info("warning: leaving {} out of the guest: it is dynamically linked (install busybox-static)",
              busybox.string());
    return false;
  }
  return true;
}

bool is_valid_applet(std::string_view name) {
  if (name.empty() || name.size() > 64 || name == "." || name == ".." || name == "busybox") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.' || c == '+' || c == '[' || c == ']';
    if (!ok) return false;
  }
  return true;
}

Result<std::vector<std::string>> busybox_applets(const stdfs::path& busybox) {
  auto run = run_captured({busybox.string(), "--list"}, 1 << 20);
  if (!run) return with_context("listing busybox applets", run.error());
  if (run->exit_code != 0)
    return make_error("`{} --list` failed (exit {}); pass a working static busybox", busybox.string(),
                      run->exit_code);
  std::vector<std::string> applets;
  std::string_view out = run->out;
  while (!out.empty()) {
    size_t nl = out.find('\n');
    std::string_view name = out.substr(0, nl);
    if (is_valid_applet(name)) applets.emplace_back(name);
    if (nl == std::string_view::npos) break;
    out.remove_prefix(nl + 1);
  }
  return applets;
}

// The fixed skeleton plus the caller's files, before busybox applet links.
Result<std::vector<CpioEntry>> layout(const InitramfsInputs& in, bool with_busybox) {
  const std::string& version = in.kernel.version;
  if (version.empty() || version == "." || version == ".." || version.find('/') != std::string::npos ||
      version.find('\n') != std::string::npos)
    return make_error("guest kernel version '{}' cannot name a modules directory", version);

  std::vector<CpioEntry> entries;
  for (const char* d : {"proc", "sys", "dev", "run", "etc", "root", "mnt", "kiln", "usr", "usr/bin", "usr/sbin",
                        "usr/lib", "usr/lib64"})
    entries.push_back(make_dir(d));
  entries.push_back(make_dir("tmp", 01777));
  for (const char* d : {"bin", "sbin", "lib", "lib64"}) entries.push_back(make_symlink(d, std::string("usr/") + d));
  CpioEntry console;
  console.path = "dev/console";
  console.kind = Kind::char_device;
  console.mode = 0600;
  console.dev_major = 5;
  console.dev_minor = 1;
  entries.push_back(std::move(console));
  entries.push_back(make_file("init", in.agent, 0755));
  if (with_busybox) entries.push_back(make_file("usr/bin/busybox", *in.busybox, 0755));
  for (CpioEntry& e : system_files()) entries.push_back(std::move(e));

  std::string load_list;
  std::set<std::string> seen;
  for (const auto& rel : in.modules) {
    if (!is_valid_module_path(rel))
      return make_error("module path '{}' (from {}) is not a relative .ko path", rel, in.kernel.modules_dir.string());
    if (!seen.insert(rel).second) return make_error("module {} is listed twice for the initramfs", rel);
    std::string guest = "usr/lib/modules/" + version + "/" + rel;
    stdfs::path source = in.kernel.modules_dir / rel;
    // Checked here, before hashing opens it: a missing module means a broken modules tree.
    struct stat st {};
    if (::stat(source.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      return make_error("kernel module {} is missing or not a regular file; the modules directory {} is incomplete: "
                        "reinstall that kernel (or delete it from {} so kiln fetches it again)",
                        source.string(), in.kernel.modules_dir.string(), (in.cache_dir / "kernels").string());
    entries.push_back(make_file(guest, std::move(source), 0644));
    load_list += "/" + guest + "\n";
  }
  entries.push_back(make_text("kiln/modules", std::move(load_list)));
  return canonical_tree(std::move(entries));
}

// Every byte that decides the archive's content, in canonical order.
Result<std::string> manifest(const std::vector<CpioEntry>& entries, const InitramfsInputs& in) {
  std::string m = fmt::format("kiln-initramfs {}\nkernel {}\n", kInitramfsFormatVersion, in.kernel.version);
  for (const auto& e : entries) {
    switch (e.kind) {
      case Kind::directory:
        m += fmt::format("d {} {:o}\n", e.path, e.mode);
        break;
      case Kind::symlink:
        m += fmt::format("l {} -> {}\n", e.path, e.link_target);
        break;
      case Kind::char_device:
        m += fmt::format("c {} {:o} {}:{}\n", e.path, e.mode, e.dev_major, e.dev_minor);
        break;
      case Kind::file: {
        std::string digest;
        if (e.source.empty()) {
          digest = digest_bytes(e.data);
        } else {
          auto d = memo_digest_file(e.source);
          if (!d) return with_context("hashing initramfs input", d.error());
          digest = std::move(*d);
        }
        m += fmt::format("f {} {:o} {}\n", e.path, e.mode, digest);
        break;
      }
    }
  }
  return m;
}

// Write to a temp file and rename: readers never see a partial archive; two builders racing
// write identical bytes, so whichever rename lands last is equally right.
Result<void> write_archive(const stdfs::path& out, const std::vector<CpioEntry>& entries) {
  KILN_ASSIGN_OR_RETURN(fs::TempFile tmp, fs::TempFile::beside(out));
  KILN_TRY(write_cpio_newc(tmp.fd(), entries, out.string()));
  return tmp.commit(out, fs::Durability::flushed);
}

}  // namespace

Result<Initramfs> build_initramfs(const InitramfsInputs& in) {
  log::ScopedTimer timer("initramfs");
  KILN_TRY(check_agent(in.agent));
  bool with_busybox = in.busybox && !in.busybox->empty() && usable_busybox(*in.busybox);
  KILN_ASSIGN_OR_RETURN(std::vector<CpioEntry> entries, layout(in, with_busybox));
  KILN_ASSIGN_OR_RETURN(std::string m, manifest(entries, in));
  Initramfs result;
  result.digest = digest_bytes(m);
  result.file = in.cache_dir / "initramfs" / (result.digest + ".cpio");

  struct stat st {};
  if (::stat(result.file.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    log::debug("initramfs cache hit: {}", result.file.string());
    return result;
  }
  // Applet links follow from the busybox binary, which the digest already covers; listing
  // them needs a subprocess, so only a miss pays for it.
  if (with_busybox) {
    KILN_ASSIGN_OR_RETURN(auto applets, busybox_applets(*in.busybox));
    std::set<std::string> taken;
    for (const auto& e : entries) taken.insert(e.path);
    for (const auto& a : applets)
      if (!taken.count("usr/bin/" + a)) entries.push_back(make_symlink("usr/bin/" + a, "busybox"));
    KILN_ASSIGN_OR_RETURN(entries, canonical_tree(std::move(entries)));
  }
  KILN_TRY(fs::make_dirs(result.file.parent_path()));
  KILN_TRY(write_archive(result.file, entries));
  log::verbose("built initramfs {}", result.file.string());
  return result;
}

}  // namespace kiln::image
