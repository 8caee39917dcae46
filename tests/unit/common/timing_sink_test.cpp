// log::set_timing_sink: how benchmarks collect ScopedTimer durations (bench/timing_capture).
#include "common/log.h"

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::mutex g_mutex;
std::vector<std::pair<std::string, double>> g_seen;

void record(const char* name, double ms) {
  std::lock_guard lock(g_mutex);
  g_seen.emplace_back(name, ms);
}

class TimingSinkTest : public ::testing::Test {
 protected:
  void SetUp() override { g_seen.clear(); }
  void TearDown() override { kiln::log::set_timing_sink(nullptr); }
};

TEST_F(TimingSinkTest, ReceivesEveryTimerWithTimingsOff) {
  kiln::log::set_timings(false);
  kiln::log::set_timing_sink(&record);
  {
    kiln::log::ScopedTimer outer("outer");
    { kiln::log::ScopedTimer inner("inner"); }
  }
  ASSERT_EQ(g_seen.size(), 2u);
  EXPECT_EQ(g_seen[0].first, "inner");
  EXPECT_EQ(g_seen[1].first, "outer");
  EXPECT_GE(g_seen[1].second, g_seen[0].second);
  EXPECT_GE(g_seen[0].second, 0.0);
}

TEST_F(TimingSinkTest, RemovedSinkReceivesNothing) {
  kiln::log::set_timing_sink(&record);
  kiln::log::set_timing_sink(nullptr);
  { kiln::log::ScopedTimer t("unseen"); }
  EXPECT_TRUE(g_seen.empty());
}

TEST_F(TimingSinkTest, TimersOnOtherThreadsReachIt) {
  kiln::log::set_timing_sink(&record);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([] {
      for (int j = 0; j < 100; ++j) kiln::log::ScopedTimer t("thread");
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(g_seen.size(), 400u);
}

}  // namespace
