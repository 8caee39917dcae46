// Levelled logging to stderr and scoped step timers (printed with -v / --timings).
#pragma once

#include "common/clock.h"

#include <fmt/format.h>

#include <string>

namespace kiln::log {

enum class Level { quiet = 0, info = 1, verbose = 2, debug = 3 };

void set_level(Level level);
Level level();
void set_timings(bool on);
bool timings();

void write(Level level, const std::string& line);

template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() >= Level::info) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void verbose(fmt::format_string<Args...> f, Args&&... args) {
  if (level() >= Level::verbose) write(Level::verbose, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() >= Level::debug) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}

/// Always printed: "kiln: error: ..." — the one line a user sees when kiln itself fails.
void error(const std::string& message);

/// Receives the name and duration of every ScopedTimer that ends, whether timings are
/// printed or not: how a benchmark collects a breakdown. Runs on the thread that ends
/// the timer (vCPU and I/O threads too), so it must be thread-safe. nullptr: none.
using TimingSink = void (*)(const char* name, double ms);
void set_timing_sink(TimingSink sink);

/// Times one step; prints "kiln: timing: <name> <ms>" on destruction when timings are on.
/// Costs one clock read when off.
class ScopedTimer {
 public:
  explicit ScopedTimer(const char* name);
  ~ScopedTimer();
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;
  double elapsed_ms() const;

 private:
  const char* name_;
  Clock::time_point start_;
};

}  // namespace kiln::log
