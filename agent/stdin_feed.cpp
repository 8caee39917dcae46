#include "agent/stdin_feed.h"

#include <fcntl.h>

#include <cerrno>

#include "agent/log.h"

namespace kiln::agent {

StdinFeed::StdinFeed(UniqueFd write_end) : pipe_(std::move(write_end)) {
  ::fcntl(pipe_.get(), F_SETFL, O_NONBLOCK);
}

uint32_t StdinFeed::take_grant() {
  if (closed_ || eof_) return 0;  // nothing more will be taken
  // Outstanding credit: granted, and not yet passed on to the command.
  const uint64_t room = kWindow - (granted_ - written_);
  if (granted_ != 0 && room < kWindow / 2) return 0;  // batch: no frame per small read
  granted_ += room;
  return static_cast<uint32_t>(room);
}

void StdinFeed::accept(const proto::Frame& frame) {
  if (frame.type == proto::MsgType::stdin_eof) {
    eof_ = true;
    write_pending();
    return;
  }
  if (closed_) return;  // the command closed its stdin; bytes already in flight end here
  if (eof_) {
    log("dropping ", frame.payload.size(), " stdin bytes the host sent after stdin_eof");
    return;
  }
  size_t take = frame.payload.size();
  const uint64_t allowed = granted_ - received_;
  if (take > allowed) {
    // Within the window whatever the host does: bounded memory beats its bytes.
    log("the host sent ", take - allowed, " stdin bytes beyond its credit; dropping them");
    take = static_cast<size_t>(allowed);
  }
  pending_.erase(0, pending_pos_);
  pending_pos_ = 0;
  pending_.append(frame.payload, 0, take);
  received_ += take;
}

int StdinFeed::fd_waiting_to_write() const { return pending_pos_ < pending_.size() ? pipe_.get() : -1; }

void StdinFeed::write_pending() {
  while (!closed_ && pending_pos_ < pending_.size()) {
    ssize_t n = ::write(pipe_.get(), pending_.data() + pending_pos_, pending_.size() - pending_pos_);
    if (n > 0) {
      pending_pos_ += static_cast<size_t>(n);
      written_ += static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;  // the pipe is full: poll says when it has room
    // EPIPE: the command closed its stdin (or exited); what it did not read is dropped,
    // as with any pipe. No more credit goes out, so the host stops reading.
    close_pipe();
    return;
  }
  if (eof_ && !closed_) close_pipe();  // everything written: the command sees EOF
}

UniqueFd StdinFeed::release() {
  closed_ = true;
  return std::move(pipe_);
}

void StdinFeed::close_pipe() {
  pipe_.reset();
  closed_ = true;
  pending_.clear();
  pending_pos_ = 0;
}

}  // namespace kiln::agent
