// Host side of the agent channel: sends requests, reads the guest's replies.
// The guest is hostile: every frame is bounded and validated, every wait has a
// deadline, and a dead VMM or a termination signal ends any wait.
#pragma once

#include "agent/protocol.h"
#include "common/clock.h"
#include "common/result.h"

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kiln::runner {

class AgentClient {
 public:
  /// Descriptors a wait also watches for the caller: the command's input, a resize notice.
  using InputFds = std::array<int, 2>;

  /// `vm_dead` returns a description once the VM's process has died.
  AgentClient(int fd, std::function<std::optional<std::string>()> vm_dead);

  /// Bake: wait for the agent's hello, answer with the newest protocol version and
  /// the features both ends have (hello_ack), and wait for its ok. A peer with no
  /// version in common is an error naming both. The returned agent_version is
  /// escaped for display (guest_text.h).
  Result<proto::Hello> handshake(Deadline deadline);
  /// After a restore: queue a hello_ack restating this build's version and features.
  /// The agent in a snapshot agreed with the kiln that baked it, which need not be
  /// this one; its ok / error is the reply to the next expect_ok.
  void restate_agreement();
  /// Queue a share request (feature::shares): the agent mounts the host's trees read-only
  /// at `roots` (guest paths, the share's entries "0", "1", ... in this order) with a
  /// guest-only layer for writes, served by the ShareServer on the VM's share port, which
  /// must be running before this request reaches the guest. Queue it after the payload
  /// (the payload's files under a root stay on top of the host's) and before exec; its
  /// ok / error is the reply to the expect_ok in its turn. Fails at once, queueing
  /// nothing, if the agent did not agree to shares or a root is not a path it takes.
  Result<void> queue_share(const std::vector<std::string>& roots);
  /// queue_share, then wait for its reply: for when no other request is outstanding.
  Result<void> share(const std::vector<std::string>& roots, Deadline deadline);
  /// Queue a request; it is written by the next wait. Requests pipeline: each gets one reply.
  void send(proto::MsgType type, std::string_view payload);
  /// Queue a file's bytes as file_data frames after its put_file header; `on_chunk`, if
  /// set, sees each chunk as it is queued (to digest exactly what was sent).
  Result<void> send_file_data(int fd, uint64_t size, const std::function<void(std::string_view)>& on_chunk = {});
  /// Flush queued requests and return the next frame the guest sent.
  Result<proto::Frame> next_frame(Deadline deadline);
  /// Like next_frame, but returns nothing as soon as one of `inputs` (-1: none) is
  /// readable or hung up, so the caller can forward its input without a thread.
  Result<std::optional<proto::Frame>> next_frame_or_input(Deadline deadline, InputFds inputs);
  /// Did the agent agree to `feature` (proto::feature), as far as this client knows?
  bool has_feature(uint64_t feature) const { return features_ && (*features_ & feature) != 0; }
  /// Bytes queued for the guest and not written yet.
  size_t queued() const { return out_.size() - out_pos_; }
  /// Next frame must be ok; an error frame becomes an Error naming `what`.
  Result<void> expect_ok(Deadline deadline, const std::string& what);
  /// Flush everything queued (no reply expected).
  Result<void> flush(Deadline deadline);

 private:
  // Runs until a frame is decoded (want_frame) or everything is written, or `input_fd` is ready.
  Result<void> pump(Deadline deadline, bool want_frame, InputFds inputs = {-1, -1}, bool* input_ready = nullptr);
  int fd_;
  std::function<std::optional<std::string>()> vm_dead_;
  proto::FrameDecoder decoder_;
  // The features agreed by handshake() or restated by restate_agreement() (an agent that
  // lacks one refuses the restatement, and that error is the reply before any later one).
  std::optional<uint64_t> features_;
  std::string out_;
  size_t out_pos_ = 0;
};

}  // namespace kiln::runner
