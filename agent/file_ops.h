// Filesystem requests: PUT_FILE (+ FILE_DATA), SYMLINK, MKDIR. The payload
// lands at the same absolute paths as on the host; whatever the guest image
// had there before (often a symlink into busybox) is replaced, never written through.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "agent/protocol.h"
#include "agent/status.h"
#include "common/unique_fd.h"

namespace kiln::agent {

/// One PUT_FILE in progress. The file is created when the request arrives and
/// filled as its FILE_DATA frames come in. After a failure the remaining bytes
/// are still consumed (the host sends them regardless), then the error is reported.
class FilePut {
 public:
  explicit FilePut(const proto::PutFile& req);

  /// Consumes one FILE_DATA payload; more bytes than announced fail the put.
  void feed(std::string_view data);
  /// All announced bytes arrived (or the put already failed for good).
  bool done() const { return received_ == size_ || overrun_; }
  /// Ends the put: closes the file and returns the reply. A failed put leaves no partial file.
  Status finish();
  /// Ends the put early because a frame other than FILE_DATA arrived.
  Status interrupt(std::string_view frame_name);

  const std::string& path() const { return path_; }

 private:
  void fail(std::string message);

  std::string path_;
  uint64_t size_ = 0;
  uint64_t received_ = 0;
  UniqueFd fd_;
  bool created_ = false;
  bool overrun_ = false;
  std::string error_;
};

Status make_symlink(const proto::Symlink& req);
Status make_directory(const proto::Mkdir& req);

}  // namespace kiln::agent
