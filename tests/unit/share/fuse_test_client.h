// Drives a FuseSession the way the guest kernel does: builds request bytes
// (fuse_in_header + the opcode's struct + names) and splits each reply into its
// error and payload, checking its header (length, unique) on the way.
#pragma once

#include "common/fs.h"
#include "share/fuse_session.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/fuse.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::share::testing {

/// A struct's bytes, to put in a request body.
template <typename T>
std::string bytes_of(const T& value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof value);
}

/// A name as LOOKUP sends it: the bytes and a NUL.
inline std::string name_z(std::string_view name) { return std::string(name) + '\0'; }

/// The bytes of one request.
inline std::string request_bytes(uint32_t opcode, uint64_t unique, uint64_t nodeid, std::string_view body,
                                 uint32_t uid = 0, uint32_t gid = 0) {
  fuse_in_header h{};
  h.len = static_cast<uint32_t>(sizeof h + body.size());
  h.opcode = opcode;
  h.unique = unique;
  h.nodeid = nodeid;
  h.uid = uid;
  h.gid = gid;
  h.pid = 1234;
  return bytes_of(h) + std::string(body);
}

inline std::span<const uint8_t> as_span(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct Reply {
  bool present = false;  ///< false: no reply at all
  int error = 0;         ///< errno (positive), 0 on success
  std::string payload;

  template <typename T>
  T as() const {
    T value{};
    EXPECT_EQ(payload.size(), sizeof value) << "reply payload size";
    std::memcpy(&value, payload.data(), std::min(payload.size(), sizeof value));
    return value;
  }
};

/// Splits reply bytes; fails the test if the header does not describe them.
inline Reply parse_reply(const std::string& bytes, uint64_t unique) {
  Reply r;
  if (bytes.empty()) return r;
  r.present = true;
  fuse_out_header h{};
  EXPECT_GE(bytes.size(), sizeof h);
  if (bytes.size() < sizeof h) return r;
  std::memcpy(&h, bytes.data(), sizeof h);
  EXPECT_EQ(h.len, bytes.size()) << "reply header length";
  EXPECT_EQ(h.unique, unique) << "reply to another request";
  EXPECT_LE(h.error, 0);
  r.error = -h.error;
  r.payload = bytes.substr(sizeof h);
  if (r.error != 0) {
    EXPECT_TRUE(r.payload.empty()) << "an error reply carries nothing";
  }
  return r;
}

/// One directory entry of a READDIR reply.
struct Dirent {
  std::string name;
  uint64_t ino;
  uint64_t off;
  uint32_t type;
};

/// The records of a READDIR payload; fails the test on a malformed one.
inline std::vector<Dirent> parse_dirents(std::string_view payload) {
  std::vector<Dirent> out;
  size_t pos = 0;
  while (pos < payload.size()) {
    fuse_dirent d{};
    const size_t fixed = offsetof(fuse_dirent, name);
    EXPECT_LE(pos + fixed, payload.size());
    if (pos + fixed > payload.size()) break;
    std::memcpy(&d, payload.data() + pos, fixed);
    const size_t record = (fixed + d.namelen + 7) & ~size_t{7};
    EXPECT_LE(pos + record, payload.size()) << "record past the payload";
    if (pos + record > payload.size()) break;
    out.push_back({std::string(payload.substr(pos + fixed, d.namelen)), d.ino, d.off, d.type});
    pos += record;
  }
  return out;
}

class Client {
 public:
  explicit Client(FuseSession& session) : session_(session) {}

  Reply call(uint32_t opcode, uint64_t nodeid, std::string_view body = {}, uint32_t uid = 0, uint32_t gid = 0) {
    const uint64_t unique = next_unique_++;
    return parse_reply(session_.handle(as_span(request_bytes(opcode, unique, nodeid, body, uid, gid))), unique);
  }

  /// INIT as Linux 6.1 sends it (protocol 7.36, 64-byte fuse_init_in).
  Reply init(uint32_t major = 7, uint32_t minor = 36, uint32_t flags = 0xffffffffu) {
    fuse_init_in in{};
    in.major = major;
    in.minor = minor;
    in.max_readahead = 128 * 1024;
    in.flags = flags;
    return call(FUSE_INIT, 0, bytes_of(in));
  }

  Reply lookup(uint64_t parent, std::string_view name) { return call(FUSE_LOOKUP, parent, name_z(name)); }

  /// LOOKUP that must succeed: the entry.
  fuse_entry_out entry(uint64_t parent, std::string_view name) {
    const Reply r = lookup(parent, name);
    EXPECT_EQ(r.error, 0) << "LOOKUP " << name << ": " << std::strerror(r.error);
    return r.error == 0 ? r.as<fuse_entry_out>() : fuse_entry_out{};
  }

  /// Looks up each component of `path` from root `root`; the last one's nodeid.
  uint64_t walk(std::string_view path, uint64_t root = 0) {
    uint64_t id = entry(kRootNodeId, std::to_string(root)).nodeid;
    for (const auto& part : std::filesystem::path(path)) id = entry(id, part.string()).nodeid;
    return id;
  }

  Reply open(uint64_t nodeid, uint32_t flags = O_RDONLY, uint32_t opcode = FUSE_OPEN) {
    fuse_open_in in{};
    in.flags = flags;
    return call(opcode, nodeid, bytes_of(in));
  }
  /// OPEN/OPENDIR that must succeed: the fh.
  uint64_t open_ok(uint64_t nodeid, uint32_t opcode = FUSE_OPEN) {
    const Reply r = open(nodeid, O_RDONLY, opcode);
    EXPECT_EQ(r.error, 0) << std::strerror(r.error);
    return r.error == 0 ? r.as<fuse_open_out>().fh : 0;
  }

  Reply read(uint64_t nodeid, uint64_t fh, uint64_t offset, uint32_t size, uint32_t opcode = FUSE_READ) {
    fuse_read_in in{};
    in.fh = fh;
    in.offset = offset;
    in.size = size;
    return call(opcode, nodeid, bytes_of(in));
  }

  Reply release(uint64_t nodeid, uint64_t fh, uint32_t opcode = FUSE_RELEASE) {
    fuse_release_in in{};
    in.fh = fh;
    return call(opcode, nodeid, bytes_of(in));
  }

  /// The whole file, read in `chunk`-byte READs.
  std::string read_file(uint64_t nodeid, uint32_t chunk = 4096) {
    const uint64_t fh = open_ok(nodeid);
    std::string data;
    for (;;) {
      const Reply r = read(nodeid, fh, data.size(), chunk);
      EXPECT_EQ(r.error, 0);
      if (r.error != 0 || r.payload.empty()) break;
      data += r.payload;
    }
    EXPECT_EQ(release(nodeid, fh).error, 0);
    return data;
  }

  /// The whole directory, listed in READDIRs of at most `size` bytes; each reply is
  /// checked to fit in `size`.
  std::vector<Dirent> list(uint64_t nodeid, uint32_t size = 4096) {
    const uint64_t fh = open_ok(nodeid, FUSE_OPENDIR);
    std::vector<Dirent> all;
    uint64_t offset = 0;
    for (int guard = 0; guard < 100000; ++guard) {
      const Reply r = read(nodeid, fh, offset, size, FUSE_READDIR);
      EXPECT_EQ(r.error, 0);
      EXPECT_LE(r.payload.size(), size) << "READDIR reply larger than asked";
      if (r.error != 0 || r.payload.empty()) break;
      const std::vector<Dirent> part = parse_dirents(r.payload);
      if (part.empty()) break;
      all.insert(all.end(), part.begin(), part.end());
      offset = part.back().off;
    }
    EXPECT_EQ(release(nodeid, fh, FUSE_RELEASEDIR).error, 0);
    return all;
  }

  /// The names of list(), "." and ".." left out.
  std::set<std::string> names(uint64_t nodeid, uint32_t size = 4096) {
    std::set<std::string> out;
    for (const Dirent& d : list(nodeid, size)) {
      if (d.name == "." || d.name == "..") continue;
      EXPECT_TRUE(out.insert(d.name).second) << "listed twice: " << d.name;
    }
    return out;
  }

  void forget(uint64_t nodeid, uint64_t count) {
    fuse_forget_in in{};
    in.nlookup = count;
    const Reply r = call(FUSE_FORGET, nodeid, bytes_of(in));
    EXPECT_FALSE(r.present) << "FORGET got a reply";
  }

 private:
  FuseSession& session_;
  uint64_t next_unique_ = 1;
};

}  // namespace kiln::share::testing
