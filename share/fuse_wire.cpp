#include "share/fuse_wire.h"

#include <algorithm>

namespace kiln::share {

std::optional<uint32_t> announced_length(std::span<const uint8_t, kInHeaderSize> header) {
  uint32_t len = 0;
  std::memcpy(&len, header.data() + offsetof(fuse_in_header, len), sizeof len);
  if (len < kInHeaderSize || len > kMaxMessage) return std::nullopt;
  return len;
}

std::optional<Request> parse_request(std::span<const uint8_t> bytes) {
  if (bytes.size() < kInHeaderSize) return std::nullopt;
  const std::optional<uint32_t> len = announced_length(bytes.first<kInHeaderSize>());
  if (!len || *len != bytes.size()) return std::nullopt;
  Request request{};
  std::memcpy(&request.header, bytes.data(), kInHeaderSize);
  request.body = bytes.subspan(kInHeaderSize);
  return request;
}

std::optional<std::string_view> BodyReader::take_string() {
  const auto nul = std::find(rest_.begin(), rest_.end(), uint8_t{0});
  if (nul == rest_.end()) return std::nullopt;
  const auto size = static_cast<size_t>(nul - rest_.begin());
  std::string_view text(reinterpret_cast<const char*>(rest_.data()), size);
  rest_ = rest_.subspan(size + 1);
  return text;
}

namespace {

void put_header(std::string& reply, uint64_t unique, int err) {
  fuse_out_header out{};
  out.len = static_cast<uint32_t>(reply.size());
  out.error = -err;
  out.unique = unique;
  std::memcpy(reply.data(), &out, sizeof out);
}

}  // namespace

std::string error_reply(uint64_t unique, int err) {
  std::string reply(kOutHeaderSize, '\0');
  put_header(reply, unique, err);
  return reply;
}

std::string ok_reply(uint64_t unique, std::string_view payload) {
  std::string reply(kOutHeaderSize, '\0');
  reply.append(payload);
  put_header(reply, unique, 0);
  return reply;
}

std::string reply_with_payload(uint64_t unique, size_t capacity) {
  std::string reply(kOutHeaderSize + capacity, '\0');
  put_header(reply, unique, 0);
  return reply;
}

void finish_reply(std::string& reply, size_t payload_size) {
  fuse_out_header out{};
  std::memcpy(&out, reply.data(), sizeof out);
  reply.resize(kOutHeaderSize + payload_size);
  put_header(reply, out.unique, 0);
}

fuse_attr to_fuse_attr(const struct stat& st) {
  fuse_attr a{};
  a.ino = st.st_ino;
  a.size = static_cast<uint64_t>(st.st_size);
  a.blocks = static_cast<uint64_t>(st.st_blocks);
  a.atime = static_cast<uint64_t>(st.st_atim.tv_sec);
  a.mtime = static_cast<uint64_t>(st.st_mtim.tv_sec);
  a.ctime = static_cast<uint64_t>(st.st_ctim.tv_sec);
  a.atimensec = static_cast<uint32_t>(st.st_atim.tv_nsec);
  a.mtimensec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  a.ctimensec = static_cast<uint32_t>(st.st_ctim.tv_nsec);
  a.mode = st.st_mode;
  a.nlink = static_cast<uint32_t>(std::min<nlink_t>(st.st_nlink, UINT32_MAX));
  a.uid = st.st_uid;
  a.gid = st.st_gid;
  a.rdev = 0;
  a.blksize = static_cast<uint32_t>(st.st_blksize);
  return a;
}

fuse_kstatfs to_fuse_kstatfs(const struct statfs& st) {
  fuse_kstatfs k{};
  k.blocks = st.f_blocks;
  k.bfree = st.f_bfree;
  k.bavail = st.f_bavail;
  k.files = st.f_files;
  k.ffree = st.f_ffree;
  k.bsize = static_cast<uint32_t>(st.f_bsize);
  k.namelen = static_cast<uint32_t>(st.f_namelen);
  k.frsize = static_cast<uint32_t>(st.f_frsize);
  return k;
}

}  // namespace kiln::share
