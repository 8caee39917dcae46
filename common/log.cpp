#include "common/log.h"

#include <atomic>
#include <cstdio>

namespace kiln::log {
namespace {
Level g_level = Level::info;
bool g_timings = false;
std::atomic<TimingSink> g_sink{nullptr};
}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }
void set_timings(bool on) { g_timings = on; }
bool timings() { return g_timings; }
void set_timing_sink(TimingSink sink) { g_sink.store(sink); }

void write(Level, const std::string& line) {
  std::string out = "kiln: " + line + "\n";
  std::fwrite(out.data(), 1, out.size(), stderr);
}

void error(const std::string& message) {
  std::string out = "kiln: error: " + message + "\n";
  std::fwrite(out.data(), 1, out.size(), stderr);
}

ScopedTimer::ScopedTimer(const char* name) : name_(name), start_(Clock::now()) {}

double ScopedTimer::elapsed_ms() const {
  return ms_since(start_);
}

ScopedTimer::~ScopedTimer() {
  const TimingSink sink = g_sink.load();
  if (!g_timings && !sink) return;
  const double ms = elapsed_ms();
  if (sink) sink(name_, ms);
  if (g_timings) write(Level::info, fmt::format("timing: {:<28} {:8.1f} ms", name_, ms));
}

}  // namespace kiln::log
