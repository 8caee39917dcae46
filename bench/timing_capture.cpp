#include "bench/timing_capture.h"

#include "common/log.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace kiln::bench {
namespace {

// The sink is a plain function pointer (callable from vCPU and I/O threads), so the
// collected data is global, behind a mutex.
std::mutex g_mutex;
std::map<std::string, double> g_collected;
bool g_installed = false;

void collect(const char* name, double ms) {
  std::lock_guard lock(g_mutex);
  g_collected[name] += ms;
}

}  // namespace

TimingCapture::TimingCapture() {
  std::lock_guard lock(g_mutex);
  if (g_installed) {
    std::fprintf(stderr, "bench: internal error: two TimingCaptures at once\n");
    std::abort();
  }
  g_installed = true;
  g_collected.clear();
  log::set_timing_sink(&collect);
}

TimingCapture::~TimingCapture() {
  log::set_timing_sink(nullptr);
  std::lock_guard lock(g_mutex);
  g_installed = false;
  g_collected.clear();
}

std::map<std::string, double> TimingCapture::take() {
  std::lock_guard lock(g_mutex);
  std::map<std::string, double> out;
  out.swap(g_collected);
  return out;
}

}  // namespace kiln::bench
