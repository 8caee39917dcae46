// Fuzzes the share's FUSE handler (share/fuse_session.h) as a hostile guest kernel
// would drive it: sequences of arbitrary requests against a small fixed host tree
// (files, nested directories, symlinks in and out, a FIFO, a hard link, a directory
// of many entries). Each input gets a fresh session with small bounds. Must never
// crash, leak, read past a request, or break the reply framing; nodes and open
// handles must stay within their bounds. Input layout:
//   byte 0   bit 0: send a valid INIT (7.36) first, so the rest reaches the handlers
//            bit 1: fix up each request's fuse_in_header.len to its real size
//   rest     records: u16 size (little-endian), then that many bytes, one request
// Nodeids are handed out from 2 up and file handles from 1 up, so small values in
// the requests hit what earlier requests in the same input looked up and opened.
#include "share/fuse_session.h"

#include <linux/fuse.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

using namespace kiln::share;

namespace {

constexpr SessionLimits kLimits{.max_nodes = 16, .max_handles = 8};

void write_file(const std::filesystem::path& p, const std::string& content) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

/// The fixed host tree, made once per process and removed at exit.
const std::vector<std::filesystem::path>& roots() {
  static std::filesystem::path base;
  static const std::vector<std::filesystem::path> paths = [] {
    char templ[] = "/tmp/kiln-share-fuzz-XXXXXX";
    if (::mkdtemp(templ) == nullptr) std::abort();
    base = templ;
    const auto r0 = base / "r0";
    const auto r1 = base / "r1";
    write_file(r0 / "top", "top level\n");
    write_file(r0 / "a/b/file.txt", "nested\n");
    write_file(r0 / "big", std::string(70000, 'B'));
    std::filesystem::create_symlink("/etc/passwd", r0 / "link");
    std::filesystem::create_symlink("a/b", r0 / "dirlink");
    std::filesystem::create_symlink("/no/such/place", r0 / "dangling");
    if (::mkfifo((r0 / "fifo").c_str(), 0644) != 0) std::abort();
    std::filesystem::create_hard_link(r0 / "top", r0 / "a/hardlink");
    for (int i = 0; i < 40; ++i) write_file(r0 / "many" / ("entry-" + std::to_string(i)), "");
    write_file(r1 / "x", "second root\n");
    std::atexit([] { std::filesystem::remove_all(base); });
    return std::vector<std::filesystem::path>{r0, r1};
  }();
  return paths;
}

void check_reply(const std::string& reply, const fuse_in_header* request) {
  if (reply.empty()) return;
  fuse_out_header h{};
  if (reply.size() < sizeof h || reply.size() > kMaxMessage) std::abort();
  std::memcpy(&h, reply.data(), sizeof h);
  if (h.len != reply.size() || h.error > 0 || h.error < -4095) std::abort();
  if (request == nullptr || h.unique != request->unique) std::abort();
  if (h.error != 0 && reply.size() != sizeof h) std::abort();
}

void send(FuseSession& session, std::span<const uint8_t> request) {
  const std::string reply = session.handle(request);
  fuse_in_header h{};
  const bool framed = request.size() >= sizeof h;
  if (framed) std::memcpy(&h, request.data(), sizeof h);
  check_reply(reply, framed ? &h : nullptr);
  if (session.node_count() > kLimits.max_nodes || session.open_handle_count() > kLimits.max_handles) std::abort();
}

void send_init(FuseSession& session) {
  struct {
    fuse_in_header h;
    fuse_init_in in;
  } init{};
  init.h.len = sizeof init;
  init.h.opcode = FUSE_INIT;
  init.h.unique = 1;
  init.in.major = 7;
  init.in.minor = 36;
  init.in.max_readahead = 131072;
  init.in.flags = 0xffffffffu;
  send(session, {reinterpret_cast<const uint8_t*>(&init), sizeof init});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto session = FuseSession::create(roots(), kLimits);
  if (!session) std::abort();
  const bool fix_len = (data[0] & 2) != 0;
  if ((data[0] & 1) != 0) send_init(*session);
  std::string request;
  size_t pos = 1;
  while (pos + 2 <= size) {
    const size_t len = std::min<size_t>(data[pos] | (size_t{data[pos + 1]} << 8), size - pos - 2);
    request.assign(reinterpret_cast<const char*>(data + pos + 2), len);
    pos += 2 + len;
    if (fix_len && request.size() >= sizeof(fuse_in_header)) {
      const uint32_t real = static_cast<uint32_t>(request.size());
      std::memcpy(request.data(), &real, sizeof real);
    }
    send(*session, {reinterpret_cast<const uint8_t*>(request.data()), request.size()});
  }
  return 0;
}
