// One updating line on stderr for a download ("sha256:1a2b3c4d5e6f  12.5 MiB / 40.1 MiB"),
// redrawn at most every 100 ms, ended with a newline. Silent when stderr is not a terminal.
#pragma once

#include "common/clock.h"

#include <cstdint>
#include <string>

namespace kiln::image {

class ProgressLine {
 public:
  /// `enabled` false, or stderr not a terminal: every call does nothing.
  ProgressLine(std::string label, uint64_t total, bool enabled);
  ~ProgressLine();  ///< finish()
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  void update(uint64_t done);
  /// Draw the last state and end the line (once).
  void finish();

 private:
  void draw();
  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool active_;
  bool drawn_ = false;
  Clock::time_point last_{};
};

}  // namespace kiln::image
