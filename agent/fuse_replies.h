// Reassembly of FUSE replies from the share port's byte stream. The host writes
// raw FUSE replies back to back (struct fuse_out_header first, its `len` the
// whole reply); the port delivers them in arbitrary pieces, and /dev/fuse takes
// each reply only whole, in one write(). Pure: no I/O, so it is unit-tested and
// fuzzed on the host. The host is trusted, but a bug there must stop the share
// with a reason rather than make the guest buffer without bound.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::agent {

class FuseReplyAssembler {
 public:
  /// Appends bytes read from the port. Returns false (and error() says why) once a
  /// reply header is impossible: shorter than itself or longer than proto::kMaxShareMessage.
  /// Checked as soon as the header is in, before its body is buffered.
  bool feed(std::string_view bytes);
  /// The next complete reply, header included. The view stays valid until the next feed().
  std::optional<std::string_view> next();

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  /// Bytes held that are not yet part of a returned reply (at most one reply plus one feed).
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  bool check_header();
  std::string buf_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace kiln::agent
