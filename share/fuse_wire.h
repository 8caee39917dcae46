// FUSE messages as bytes: the framing of a request (struct fuse_in_header first, its
// `len` the whole request), reading the fixed structs and names that follow it, and
// encoding replies (struct fuse_out_header first). The ABI is <linux/fuse.h>; every
// field a guest sent is untrusted, so each read is checked against the bytes present.
#pragma once

#include <linux/fuse.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace kiln::share {

/// The largest message either way: a 1 MiB READ reply and its header, with room to spare.
inline constexpr size_t kMaxMessage = 1024 * 1024 + 4096;
/// The most data one READ (or READDIR) reply carries.
inline constexpr uint32_t kMaxRead = 1024 * 1024;
inline constexpr size_t kInHeaderSize = sizeof(fuse_in_header);
inline constexpr size_t kOutHeaderSize = sizeof(fuse_out_header);

/// The length a request announces in its first kInHeaderSize bytes, if it is one a
/// request may have: at least its header, at most kMaxMessage.
std::optional<uint32_t> announced_length(std::span<const uint8_t, kInHeaderSize> header);

/// A request's header and its body (what follows the header, up to header.len).
struct Request {
  fuse_in_header header;
  std::span<const uint8_t> body;
};

/// `bytes` as one whole request: nullopt unless it holds a header whose `len` is
/// exactly bytes.size() and announced_length() accepts it.
std::optional<Request> parse_request(std::span<const uint8_t> bytes);

/// Reads a request body front to back; every take fails (nullopt) rather than read
/// past the end.
class BodyReader {
 public:
  explicit BodyReader(std::span<const uint8_t> body) : rest_(body) {}

  /// The next sizeof(T) bytes as a T (a <linux/fuse.h> struct).
  template <typename T>
  std::optional<T> take() {
    if (rest_.size() < sizeof(T)) return std::nullopt;
    T value;
    std::memcpy(&value, rest_.data(), sizeof(T));
    rest_ = rest_.subspan(sizeof(T));
    return value;
  }
  /// Like take(), for a struct whose older versions were shorter: at least `min_size`
  /// bytes must be there; whatever of the struct the body lacks reads as zero.
  template <typename T>
  std::optional<T> take_prefix(size_t min_size) {
    if (rest_.size() < min_size) return std::nullopt;
    const size_t size = std::min(rest_.size(), sizeof(T));
    T value{};
    std::memcpy(&value, rest_.data(), size);
    rest_ = rest_.subspan(size);
    return value;
  }
  /// The next NUL-terminated string, without its NUL (nullopt if there is no NUL).
  std::optional<std::string_view> take_string();
  size_t remaining() const { return rest_.size(); }

 private:
  std::span<const uint8_t> rest_;
};

/// A reply carrying only -`err` (err > 0).
std::string error_reply(uint64_t unique, int err);
/// A successful reply carrying `payload` (possibly nothing).
std::string ok_reply(uint64_t unique, std::string_view payload = {});
/// A successful reply carrying one struct.
template <typename T>
std::string ok_reply_struct(uint64_t unique, const T& value) {
  return ok_reply(unique, std::string_view(reinterpret_cast<const char*>(&value), sizeof value));
}

/// A reply whose payload is written in place: reply_with_payload(unique, n) returns a
/// buffer of header + n bytes; write the payload after kOutHeaderSize, then call
/// finish_reply() with the bytes actually written (<= n).
std::string reply_with_payload(uint64_t unique, size_t capacity);
void finish_reply(std::string& reply, size_t payload_size);

/// The attributes the guest sees for a host file: its host stat, with rdev dropped
/// (only regular files, directories and symlinks are ever shown).
fuse_attr to_fuse_attr(const struct stat& st);
fuse_kstatfs to_fuse_kstatfs(const struct statfs& st);

}  // namespace kiln::share
