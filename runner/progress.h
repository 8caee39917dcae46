// A one-line progress indicator on stderr for steps that take seconds (kernel
// fetch, bake). Only drawn when stderr is a terminal; otherwise each step is
// logged once as a plain line at verbose level.
#pragma once

#include "common/clock.h"

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

namespace kiln::runner {

class Progress {
 public:
  Progress();
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Show `step` (with a running timer) until the next step() or done().
  void step(const std::string& text);
  /// Clear the line.
  void done();

 private:
  void draw();
  bool tty_;
  std::mutex mu_;
  std::string text_;
  Clock::time_point since_;
  std::atomic<bool> stop_{false};
  std::thread ticker_;
};

}  // namespace kiln::runner
