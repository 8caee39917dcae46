#include "runner/progress.h"

#include "common/log.h"

#include <unistd.h>

#include <cstdio>

namespace kiln::runner {

Progress::Progress() : tty_(::isatty(STDERR_FILENO) == 1 && log::level() >= log::Level::info) {}

Progress::~Progress() { done(); }

void Progress::step(const std::string& text) {
  if (!tty_) {
    log::verbose("{}", text);
    return;
  }
  {
    std::lock_guard lock(mu_);
    text_ = text;
    since_ = Clock::now();
  }
  if (!ticker_.joinable()) {
    ticker_ = std::thread([this] {
      while (!stop_.load()) {
        draw();
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
  }
  draw();
}

void Progress::draw() {
  std::lock_guard lock(mu_);
  if (text_.empty()) return;
  double secs = seconds_since(since_);
  std::fprintf(stderr, "\r\033[Kkiln: %s ... %.1fs", text_.c_str(), secs);
  std::fflush(stderr);
}

void Progress::done() {
  if (!tty_) return;
  stop_.store(true);
  if (ticker_.joinable()) ticker_.join();
  std::lock_guard lock(mu_);
  if (!text_.empty()) std::fprintf(stderr, "\r\033[K");
  text_.clear();
}

}  // namespace kiln::runner
