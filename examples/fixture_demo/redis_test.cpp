// Tests against the Redis server the fixture started (seed.sh). Each test runs in its
// own VM restored from the fixture snapshot: they all see the seeded data, and none
// sees what another one wrote — so two tests can both increment the same counter and
// both expect the same result.
#include "resp_client.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace {

using demo::Reply;

demo::RespClient& redis() {
  static demo::RespClient client("127.0.0.1", 6379);
  return client;
}

std::vector<std::string> texts(const Reply& r) {
  std::vector<std::string> out;
  for (const auto& e : r.elements) out.push_back(e.text);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Seeded, GreetingIsThere) {
  Reply r = redis().command({"GET", "greeting"});
  ASSERT_EQ(r.kind, Reply::Kind::bulk);
  EXPECT_EQ(r.text, "hello from the fixture");
}

TEST(Seeded, ListIsThere) {
  Reply r = redis().command({"LRANGE", "menu", "0", "-1"});
  ASSERT_EQ(r.kind, Reply::Kind::array);
  ASSERT_EQ(r.elements.size(), 3u);
  EXPECT_EQ(r.elements[0].text, "espresso");
}

// Both counter tests expect 101: each starts from the seed (100), never from the other's write.
TEST(Isolation, FirstIncrementSeesTheSeed) {
  Reply r = redis().command({"INCR", "visits"});
  ASSERT_EQ(r.kind, Reply::Kind::integer);
  EXPECT_EQ(r.integer, 101);
}

TEST(Isolation, SecondIncrementSeesTheSeedToo) {
  Reply r = redis().command({"INCR", "visits"});
  ASSERT_EQ(r.kind, Reply::Kind::integer);
  EXPECT_EQ(r.integer, 101);
}

// Each writes its own key and finds only its own among the written_by_* keys.
TEST(Isolation, WriterA) {
  ASSERT_EQ(redis().command({"SET", "written_by_a", "1"}).text, "OK");
  EXPECT_EQ(texts(redis().command({"KEYS", "written_by_*"})), std::vector<std::string>{"written_by_a"});
}

TEST(Isolation, WriterB) {
  ASSERT_EQ(redis().command({"SET", "written_by_b", "1"}).text, "OK");
  EXPECT_EQ(texts(redis().command({"KEYS", "written_by_*"})), std::vector<std::string>{"written_by_b"});
}

}  // namespace
