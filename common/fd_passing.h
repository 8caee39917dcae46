// Messages that carry file descriptors (SCM_RIGHTS) over a SOCK_SEQPACKET unix socket:
// one send is one message, its descriptors attached, so neither side has to frame a
// stream. The pool daemon hands a restored VM's descriptors to a kiln run this way.
// What arrives is untrusted: bounded in bytes and descriptors; a truncated message
// (more bytes or descriptors than the receiver allows) is an error, and every
// descriptor that came with it is closed.
#pragma once

#include "common/clock.h"
#include "common/result.h"
#include "common/unique_fd.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

struct FdMessage {
  std::string bytes;
  std::vector<UniqueFd> fds;
};

/// Most descriptors one message may carry.
inline constexpr size_t kMaxPassedFds = 16;

/// Send `bytes` (non-empty) with `fds` attached as one message.
Result<void> send_fd_message(int sock, std::string_view bytes, const std::vector<int>& fds = {});

/// The next message, or nullopt when the peer closed the connection. At most `max_bytes`
/// and `max_fds` (<= kMaxPassedFds); received descriptors are close-on-exec. Errors of
/// kind timeout when `deadline` passes first.
Result<std::optional<FdMessage>> receive_fd_message(int sock, size_t max_bytes, size_t max_fds, Deadline deadline);

}  // namespace kiln
