// The agent's end of the host channel: what it holds of the host's input at once.
#include "agent/channel.h"
#include "agent/protocol.h"
#include "common/unique_fd.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

namespace kiln::agent {
namespace {

constexpr size_t kChunk = 256u << 10;  // the host's file_data frames (AgentClient::send_file_data)
constexpr int kFrames = 32;            // 8 MiB: a test executable and its libraries

std::string chunk_of(int i) { return std::string(kChunk, static_cast<char>('a' + i % 26)); }

// A memfd holding the frames the host sends to place a payload, opened as a channel
// through /proc: reads return what it holds, then end of file.
UniqueFd host_input() {
  UniqueFd fd(::memfd_create("kiln-channel-test", MFD_CLOEXEC));
  if (!fd) return fd;
  for (int i = 0; i < kFrames; ++i) {
    const std::string frame = proto::encode_frame(proto::MsgType::file_data, chunk_of(i));
    if (::write(fd.get(), frame.data(), frame.size()) != static_cast<ssize_t>(frame.size())) return UniqueFd();
  }
  return fd;
}

// Every page the agent's heap touches while it places a payload is stored in the
// payload layer's memory diff (docs/layers.md): the channel stops reading once its
// queue holds a MiB, so the host waits instead of the agent buffering the whole
// payload (it did, up to 64 MiB: a 6 MiB payload's layer stored 17 MiB, now 11.7).
TEST(Channel, HoldsAtMostAMebibyteOfTheHostsInputAndLosesNone) {
  UniqueFd input = host_input();
  ASSERT_TRUE(input);
  std::string error;
  const std::string path = "/proc/self/fd/" + std::to_string(input.get());
  auto channel = Channel::open(path.c_str(), 1000, &error);
  ASSERT_TRUE(channel) << error;

  int received = 0;
  for (int round = 0; round < kFrames + 1 && received < kFrames; ++round) {
    channel->read_available();
    size_t queued = 0;
    int frames = 0;
    while (auto frame = channel->pop()) {
      ASSERT_EQ(frame->type, proto::MsgType::file_data);
      ASSERT_TRUE(frame->payload == chunk_of(received)) << "frame " << received << " differs";
      queued += frame->payload.size();
      ++frames;
      ++received;
    }
    // One read may complete a frame past the bound, never more.
    EXPECT_LE(queued, Channel::kMaxQueuedBytes + kChunk) << "round " << round << ": " << frames << " frames queued at once";
  }
  EXPECT_EQ(received, kFrames);
  EXPECT_FALSE(channel->take_garbage_seen());
}

}  // namespace
}  // namespace kiln::agent
