// The running command's stdin when the host streams it (StdinMode::stream): a
// pipe the agent fills from stdin_data frames. Flow control is by credit: the
// agent grants the host a window of bytes and grants more only as the command
// takes them out of the agent's hands, so what the agent holds is bounded by
// the window whatever the host does, and the host reads no more of its own
// stdin than the guest can take.
#pragma once

#include <cstdint>
#include <string>

#include "agent/protocol.h"
#include "common/unique_fd.h"

namespace kiln::agent {

class StdinFeed {
 public:
  /// Bytes the host may have in flight or waiting here at any time.
  static constexpr uint32_t kWindow = 256 * 1024;

  /// `write_end` is the pipe whose read end is the command's fd 0; made non-blocking here.
  explicit StdinFeed(UniqueFd write_end);

  /// Credit to send the host now (stdin_credit), or 0: the whole window at first,
  /// then what the command consumed, in batches of at least half a window.
  uint32_t take_grant();
  /// Takes a stdin_data or stdin_eof frame from the host.
  void accept(const proto::Frame& frame);
  /// The pipe to poll for POLLOUT while bytes wait for the command, else -1.
  int fd_waiting_to_write() const;
  /// Moves waiting bytes into the pipe as far as it takes them, without blocking;
  /// closes the pipe (the command sees EOF) once the host's stdin ended and all is written.
  void write_pending();
  /// Gives up the pipe (closed already: an invalid fd) without closing it: the command
  /// keeps a stdin that has not ended.
  UniqueFd release();

 private:
  void close_pipe();

  UniqueFd pipe_;
  std::string pending_;  // received, not yet in the pipe; at most kWindow bytes
  size_t pending_pos_ = 0;
  uint64_t granted_ = 0;   // credit sent so far
  uint64_t received_ = 0;  // stdin_data bytes accepted so far
  uint64_t written_ = 0;   // bytes the pipe took (or that were dropped once it broke)
  bool eof_ = false;       // stdin_eof arrived
  bool closed_ = false;    // pipe closed: EOF given, or the command closed its end
};

}  // namespace kiln::agent
