// A QMP (QEMU Machine Protocol) client over a unix socket.
//
// QMP is line-delimited JSON: a greeting, then one reply per command, with
// asynchronous events interleaved anywhere. qemu's output is untrusted input:
// every read is bounded (1 MiB per message) and every wait has a deadline.
#pragma once

#include "common/clock.h"
#include "common/result.h"
#include "common/unique_fd.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <string>

namespace kiln::vmm::qemu {

/// A string member of an untrusted QMP object, or "" when it is missing or not a string
/// (json::value() would throw on a wrong type).
std::string qmp_string(const nlohmann::json& object, const char* key);

class QmpClient {
 public:
  /// Longest QMP message accepted; anything longer is treated as garbage.
  static constexpr size_t kMaxMessageBytes = 1 << 20;
  /// Events kept for wait_event(); older ones are dropped (nobody waits for them).
  static constexpr size_t kMaxQueuedEvents = 256;

  /// Connect to qemu's QMP socket (retrying until it exists or `deadline`), read the
  /// greeting and negotiate capabilities. `peer_alive`: see connect_unix().
  static Result<QmpClient> connect(const std::filesystem::path& socket, Deadline deadline,
                                   const std::function<bool()>& peer_alive = {});
  /// Same handshake on an already connected stream.
  static Result<QmpClient> handshake(UniqueFd fd, Deadline deadline);

  QmpClient(QmpClient&&) noexcept = default;
  QmpClient& operator=(QmpClient&&) noexcept = default;

  /// Run `command` and return its "return" value. A QMP "error" reply becomes an Error
  /// carrying qemu's description; events read meanwhile are queued for wait_event().
  Result<nlohmann::json> execute(const std::string& command, const nlohmann::json& arguments, Deadline deadline);
  Result<nlohmann::json> execute(const std::string& command, Deadline deadline) {
    return execute(command, nlohmann::json::object(), deadline);
  }
  /// Like execute(), passing `fd` along with the command (SCM_RIGHTS), as `getfd` expects.
  Result<nlohmann::json> execute_with_fd(const std::string& command, const nlohmann::json& arguments, int fd,
                                         Deadline deadline);

  /// Wait for the next event called `name` (queued ones first) and return the whole event
  /// object ({"event", "data", "timestamp"}). Earlier events of that name are consumed.
  Result<nlohmann::json> wait_event(const std::string& name, Deadline deadline);

  /// What another process needs to go on with this connection (the pool daemon hands a
  /// restored VM to a kiln run): the socket, bytes read and not yet consumed, the next id.
  struct Detached {
    UniqueFd fd;
    std::string pending;
    uint64_t next_id = 1;
  };
  /// Give up the connection; this client is unusable afterwards.
  Detached detach() &&;
  /// Go on with a connection another QmpClient detached (already negotiated).
  static QmpClient attach(Detached detached);

  /// The greeting qemu sent ({"QMP": {"version": ...}}).
  const nlohmann::json& greeting() const { return greeting_; }
  /// Events received and not yet consumed by wait_event(), oldest first.
  const std::deque<nlohmann::json>& events() const { return events_; }

 private:
  explicit QmpClient(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<void> send(const std::string& line, int pass_fd, Deadline deadline, const std::string& what);
  /// The next complete message, or an error on EOF, garbage, oversize or deadline.
  Result<nlohmann::json> read_message(Deadline deadline, const std::string& what);
  void queue_event(nlohmann::json event);

  UniqueFd fd_;
  std::string buffer_;       // bytes received and not yet consumed
  size_t scanned_ = 0;       // prefix of buffer_ already known to hold no newline
  uint64_t next_id_ = 1;     // ids pair replies with commands, so a late reply is never misread
  nlohmann::json greeting_;
  std::deque<nlohmann::json> events_;
};

}  // namespace kiln::vmm::qemu
