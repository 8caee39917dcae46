// Collects kiln's ScopedTimer durations (common/log.h timing sink) while a benchmark
// runs, so a bench can print a per-step breakdown without parsing --timings output.
#pragma once

#include <map>
#include <string>

namespace kiln::bench {

class TimingCapture {
 public:
  /// Installs the sink; only one capture may be alive at a time.
  TimingCapture();
  ~TimingCapture();
  TimingCapture(const TimingCapture&) = delete;
  TimingCapture& operator=(const TimingCapture&) = delete;

  /// Durations (ms) of the timers that ended since the last take(), summed per name
  /// (a step that ran twice counts twice), and forget them.
  std::map<std::string, double> take();
};

}  // namespace kiln::bench
