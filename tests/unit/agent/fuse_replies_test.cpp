// Reassembling FUSE replies from the share port's byte stream.
#include "agent/fuse_replies.h"

#include <linux/fuse.h>

#include <gtest/gtest.h>

#include <cstring>

#include "agent/protocol.h"

using namespace kiln::agent;

namespace {

// A reply as the host writes it: fuse_out_header (len = the whole reply), then `body`.
std::string reply(uint64_t unique, const std::string& body, int32_t error = 0) {
  fuse_out_header h{static_cast<uint32_t>(sizeof h + body.size()), error, unique};
  return std::string(reinterpret_cast<const char*>(&h), sizeof h) + body;
}

std::string with_length(std::string r, uint32_t len) {
  std::memcpy(r.data(), &len, sizeof len);
  return r;
}

TEST(FuseReplies, RepliesComeOutWholeHoweverThePortCutsThem) {
  const std::vector<std::string> sent = {reply(1, ""), reply(2, std::string(100, 'a'), -2),
                                         reply(3, std::string(70000, 'b')), reply(4, "x")};
  std::string wire;
  for (const auto& r : sent) wire += r;
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{16}, size_t{4096}, wire.size()}) {
    FuseReplyAssembler a;
    std::vector<std::string> got;
    for (size_t i = 0; i < wire.size(); i += chunk) {
      ASSERT_TRUE(a.feed(std::string_view(wire).substr(i, chunk))) << a.error();
      while (auto r = a.next()) got.emplace_back(*r);
    }
    EXPECT_EQ(got, sent) << "chunk " << chunk;
    EXPECT_EQ(a.buffered(), 0u);
  }
}

TEST(FuseReplies, AReplyWaitsForItsLastByte) {
  FuseReplyAssembler a;
  const std::string r = reply(9, "payload");
  ASSERT_TRUE(a.feed(std::string_view(r).substr(0, 10)));  // not even the whole header
  EXPECT_FALSE(a.next());
  ASSERT_TRUE(a.feed(std::string_view(r).substr(10, r.size() - 11)));
  EXPECT_FALSE(a.next());
  ASSERT_TRUE(a.feed(std::string_view(r).substr(r.size() - 1)));
  auto got = a.next();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, r);
}

TEST(FuseReplies, TheLargestAllowedReplyPasses) {
  const std::string r = reply(5, std::string(kiln::proto::kMaxShareMessage - sizeof(fuse_out_header), 'z'));
  ASSERT_EQ(r.size(), kiln::proto::kMaxShareMessage);
  FuseReplyAssembler a;
  ASSERT_TRUE(a.feed(r)) << a.error();
  auto got = a.next();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->size(), r.size());
}

TEST(FuseReplies, AnOversizedReplyIsRefusedFromItsHeader) {
  FuseReplyAssembler a;
  // Only the header arrives: the refusal must not wait for (or buffer) the megabyte behind it.
  EXPECT_FALSE(a.feed(with_length(reply(1, ""), kiln::proto::kMaxShareMessage + 1)));
  EXPECT_TRUE(a.failed());
  EXPECT_NE(a.error().find("over the 1052672-byte limit"), std::string::npos) << a.error();
  EXPECT_FALSE(a.next());
  EXPECT_FALSE(a.feed("more"));  // stays failed
}

TEST(FuseReplies, AReplyShorterThanItsHeaderIsRefused) {
  FuseReplyAssembler a;
  EXPECT_FALSE(a.feed(with_length(reply(1, "abcdefgh"), 8)));
  EXPECT_NE(a.error().find("shorter than its 16-byte header"), std::string::npos) << a.error();
}

TEST(FuseReplies, RepliesBeforeABadHeaderStillComeOut) {
  FuseReplyAssembler a;
  const std::string good = reply(1, "ok");
  // The header checked on arrival is the first one; the bad one is found when its turn comes.
  EXPECT_TRUE(a.feed(good + with_length(reply(2, ""), 0xffffffffu)));
  // The good reply is handed out; nothing after the bad header is.
  auto got = a.next();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, good);
  EXPECT_FALSE(a.next());
  EXPECT_TRUE(a.failed());
}

TEST(FuseReplies, HoldsOnlyWhatIsNotHandedOutYet) {
  FuseReplyAssembler a;
  const std::string r = reply(1, std::string(1000, 'q'));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(a.feed(r));
    ASSERT_TRUE(a.next());
  }
  EXPECT_EQ(a.buffered(), 0u);
}

}  // namespace
