// A share served on a thread: FUSE requests arrive on a connected stream socket (the
// host end of the guest's share port), each framed by its fuse_in_header.len, are
// answered by a FuseSession, and the replies go back on the same socket. Serving ends
// on stop(), when the peer hangs up, or at the first protocol error (a length outside
// [header, 1 MiB + 4 KiB], a read or write failing); then the socket is closed, so the
// guest's relay sees the end too, and stats().failure says what went wrong.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "share/fuse_session.h"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kiln::share {

class ShareServer {
 public:
  /// Serve FUSE requests arriving on `fd` (a connected stream socket; owned) for
  /// `roots` (see FuseSession::create) on a thread until stop() or the peer hangs up.
  /// With `resume_state` (export_state() of a server of the same roots, kept with a
  /// saved VM), it serves on the session the guest's kernel already holds.
  static Result<std::unique_ptr<ShareServer>> start(UniqueFd fd, std::vector<std::filesystem::path> roots,
                                                    SessionLimits limits = {}, std::string_view resume_state = {});
  ~ShareServer();
  ShareServer(const ShareServer&) = delete;
  ShareServer& operator=(const ShareServer&) = delete;

  /// End serving and join the thread. Idempotent.
  void stop();
  /// stop(), then the session's state for a server in another process to resume
  /// (FuseSession::save_state): call it once the guest is paused and saved.
  std::string export_state();

  struct Stats {
    uint64_t requests = 0;    ///< requests handled
    uint64_t bytes_read = 0;  ///< bytes received from the peer
    std::string failure;      ///< why serving ended early; empty if it did not (yet)
  };
  Stats stats() const;
  /// False once serving has ended (stop, hang-up or failure).
  bool serving() const { return serving_; }

 private:
  ShareServer(UniqueFd fd, UniqueFd wake, FuseSession session);
  void serve();
  /// Outcome of waiting for the socket: ready, stop() was called, or poll failed.
  enum class Wait { ready, stopped, failed };
  Wait wait_for(short events);
  /// Read more bytes into buffer_; false when serving must end.
  bool fill();
  /// Answer every whole request in buffer_; false when serving must end.
  bool answer_buffered();
  bool send_reply(const std::string& reply);
  void fail(std::string why);

  UniqueFd fd_;
  UniqueFd wake_;  ///< eventfd: stop() makes it readable
  FuseSession session_;
  std::vector<uint8_t> buffer_;
  size_t filled_ = 0;
  std::thread thread_;
  std::atomic<bool> serving_{true};

  mutable std::mutex stats_mutex_;
  Stats stats_;
};

}  // namespace kiln::share
