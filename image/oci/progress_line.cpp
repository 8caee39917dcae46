#include "image/oci/progress_line.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace kiln::image {

namespace {

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

}  // namespace

ProgressLine::ProgressLine(std::string label, uint64_t total, bool enabled)
    : label_(std::move(label)), total_(total), active_(enabled && ::isatty(STDERR_FILENO) == 1) {}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::update(uint64_t done) {
  if (!active_) return;
  done_ = done;
  auto now = Clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  draw();
}

void ProgressLine::draw() {
  std::string line = total_ ? fmt::format("{}  {} / {}", label_, mib(done_), mib(total_))
                            : fmt::format("{}  {}", label_, mib(done_));
  // \r and "erase to end of line": the line is redrawn in place.
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressLine::finish() {
  if (!active_) return;
  draw();
  std::fputc('\n', stderr);
  active_ = false;
}

}  // namespace kiln::image
