// kiln's own stdin, forwarded to the command (`echo x | kiln run -- cat`). The
// agent grants credit (stdin_credit) as the command takes bytes; kiln reads no
// more of its stdin than that, so neither side buffers without bound, and it
// reads only when poll() says there is input: no thread, no busy loop. After
// the command exits nothing more is read, whether stdin ended or not.
#pragma once

#include "agent/protocol.h"
#include "common/unique_fd.h"
#include "runner/agent_client.h"

#include <cstdint>

namespace kiln::runner {

/// How `fd` reaches the command when it gets no guest terminal (kiln run -t):
/// StdinMode::null for /dev/null (what ctest often passes on), a closed fd, or a
/// terminal unless `interactive` (kiln run -i: its lines are streamed like a pipe);
/// StdinMode::stream otherwise.
proto::StdinMode stdin_mode_for(int fd, bool interactive);

class StdinForwarder {
 public:
  /// `fd` is not owned, and its flags are not changed: other processes may share it.
  /// A pipe is read through a non-blocking descriptor of its own, a socket with
  /// MSG_DONTWAIT, so a read after poll never blocks even when another process
  /// drained the input in between.
  explicit StdinForwarder(int fd);

  /// The fd to wait on for input, or -1 while there is nothing to do: no credit, a
  /// backlog still going to the guest, or the input already ended.
  int fd_to_watch(const AgentClient& agent) const;
  /// A stdin_credit from the agent.
  void add_credit(uint32_t bytes);
  /// The input is readable: reads at most the credit and queues it as stdin_data,
  /// or stdin_eof once the input ends (a read error ends it too).
  void forward(AgentClient& agent);
  /// Bytes forwarded so far.
  uint64_t forwarded() const { return forwarded_; }

 private:
  ssize_t read_some(char* buf, size_t size);

  int fd_;              // what is read and polled: the caller's fd, or own_
  UniqueFd own_;        // a pipe's own non-blocking open file description
  bool socket_ = false;
  uint64_t credit_ = 0;
  uint64_t forwarded_ = 0;
  bool ended_ = false;
};

}  // namespace kiln::runner
