#include "agent/fuse_replies.h"

#include <linux/fuse.h>

#include <cstdint>
#include <cstring>

#include "agent/log.h"
#include "agent/protocol.h"

namespace kiln::agent {

namespace {
uint32_t reply_length(const char* header) {
  uint32_t len = 0;
  // fuse_out_header.len is its first field, in the guest's (= the host's, x86-64) byte order.
  std::memcpy(&len, header + offsetof(fuse_out_header, len), sizeof len);
  return len;
}
}  // namespace

bool FuseReplyAssembler::feed(std::string_view bytes) {
  if (failed()) return false;
  // Drop what next() already handed out, so the buffer holds one reply plus this piece.
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
  return check_header();
}

bool FuseReplyAssembler::check_header() {
  if (buffered() < sizeof(fuse_out_header)) return true;
  const uint32_t len = reply_length(buf_.data() + pos_);
  if (len < sizeof(fuse_out_header))
    error_ = cat("the host sent a FUSE reply of ", len, " bytes, shorter than its ", sizeof(fuse_out_header),
                 "-byte header");
  else if (len > proto::kMaxShareMessage)
    error_ = cat("the host sent a FUSE reply of ", len, " bytes, over the ", proto::kMaxShareMessage, "-byte limit");
  return !failed();
}

std::optional<std::string_view> FuseReplyAssembler::next() {
  if (failed() || buffered() < sizeof(fuse_out_header)) return std::nullopt;
  const uint32_t len = reply_length(buf_.data() + pos_);
  if (buffered() < len) return std::nullopt;
  // len was checked against the header size and the limit when the header arrived.
  std::string_view reply(buf_.data() + pos_, len);
  pos_ += len;
  check_header();  // the next reply's header, if it is already here
  return reply;
}

}  // namespace kiln::agent
