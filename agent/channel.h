// The agent's end of the host channel: the virtio-serial port named
// proto::kAgentPortName (a /dev/vportNpM node) carrying kiln protocol frames.
// Input is decoded as it arrives and queued, so the host may pipeline requests
// while the agent is busy (e.g. in an exec).
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "agent/protocol.h"
#include "agent/status.h"
#include "common/unique_fd.h"

namespace kiln::agent {

class Channel {
 public:
  /// Waits up to `wait_ms` for `path` to appear (the driver creates it
  /// asynchronously after module load), then opens it as a raw, non-blocking tty.
  static std::optional<Channel> open(const char* path, int wait_ms, std::string* error);
  /// Waits for the virtio-serial port called `name` (/sys/class/virtio-ports/*/name) and opens it.
  static std::optional<Channel> open_port(const char* name, int wait_ms, std::string* error);

  int fd() const { return fd_.get(); }

  /// Sends one frame completely. While the host is not draining, keeps reading
  /// its input, so a host that writes before it reads cannot deadlock us.
  Status send(proto::MsgType type, std::string_view payload = {});

  /// Reads whatever the host has sent so far, without blocking, and queues the
  /// decoded frames. Garbage is logged, the decoder reset, and garbage_seen() set.
  void read_available();

  std::optional<proto::Frame> pop();
  /// Pops the oldest stream frame (stdin_data / stdin_eof) wherever it is queued:
  /// a running command's input must not wait behind requests queued for later.
  std::optional<proto::Frame> pop_stream();
  bool has_frame() const { return !queue_.empty(); }
  bool contains(proto::MsgType type) const;

  /// Queued input is bounded: past this, stop reading and let the host wait
  /// (virtio-serial's own flow control). Small on purpose: every page the agent's
  /// heap touches while it places a payload is stored in the payload layer.
  bool queue_full() const { return queued_bytes_ >= kMaxQueuedBytes; }
  static constexpr size_t kMaxQueuedBytes = 1u << 20;

  /// True once since the last call if undecodable bytes arrived (a request may be lost).
  bool take_garbage_seen() { return std::exchange(garbage_seen_, false); }
  /// The tty reported end-of-file or an error; the caller should back off before polling again.
  bool hung_up() const { return hung_up_; }

 private:
  explicit Channel(UniqueFd fd) : fd_(std::move(fd)) {}

  UniqueFd fd_;
  proto::FrameDecoder decoder_;
  std::deque<proto::Frame> queue_;
  size_t queued_bytes_ = 0;
  bool garbage_seen_ = false;
  bool hung_up_ = false;
};

}  // namespace kiln::agent
