// The request loop of the agent. Every request gets exactly one terminal reply,
// in arrival order, because the host pipelines requests and matches replies
// FIFO. FILE_DATA frames belong to the PUT_FILE before them and get no reply
// of their own; POWEROFF gets none either.
//
// Poison rule: once a request has failed since the last SYNC (or input was
// lost to garbage), a later EXEC is refused: it would run against a payload
// that is not what the host sent. EXEC also needs a protocol version agreed by
// HELLO_ACK; STDIN_DATA / STDIN_EOF are no requests and outside an EXEC are dropped;
// RESIZE is no request either: it sets the size of the next terminal (or the current one).
// A failed SHARE poisons too: the command would not see the trees it was promised.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agent/channel.h"
#include "agent/file_ops.h"
#include "agent/reaper.h"
#include "common/unique_fd.h"

namespace kiln::agent {

class Server {
 public:
  Server(Channel& channel, Reaper& reaper) : channel_(channel), reaper_(reaper) {}

  /// Sends HELLO every 200 ms until a HELLO_ACK this agent can honour arrives, then
  /// replies OK (a HELLO_ACK it cannot honour gets ERROR naming both versions). The
  /// host snapshots the VM right after, while this agent is blocked reading the channel.
  void announce();

  /// Serves requests forever; never throws (PID 1 must not die).
  [[noreturn]] void serve();

 private:
  void wait_for_input();
  void handle(proto::Frame& frame);
  /// HELLO_ACK: the host's choice of version and features, checked against ours.
  Status agree(const std::string& payload);
  void on_sync(const std::string& payload);
  void on_put_file(const std::string& payload);
  void on_file_data(const std::string& payload);
  void on_exec(const std::string& payload);
  /// SHARE: once per VM, and only when hello_ack chose feature::shares.
  void on_share(const std::string& payload);
  void on_collect(const std::string& payload);
  void finish_put(Status status);

  /// Sends the terminal OK / ERROR reply of the current request; an ERROR poisons.
  void reply(const Status& status);
  void send(proto::MsgType type, const std::string& payload = {});

  Channel& channel_;
  Reaper& reaper_;
  std::optional<FilePut> put_;
  std::optional<proto::HelloAck> agreed_;  // what the last good HELLO_ACK chose
  bool poisoned_ = false;
  bool reply_owed_ = false;       // the current request has not had its terminal reply yet
  bool share_requested_ = false;  // a SHARE came (mounted or not): its mounts stay
  proto::WindowSize window_;      // the last RESIZE: a terminal exec's size
  std::vector<UniqueFd> detached_stdio_;  // DETACH: commands left running keep their stdio
};

/// sync(), then power the VM off. Returns only if the kernel refused.
void power_off();

}  // namespace kiln::agent
