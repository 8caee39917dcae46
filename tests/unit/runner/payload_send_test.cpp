// queue_payload against a socket whose far end reads frames as the guest agent would.
// A payload layer is keyed by the digest of the files as they were when it was keyed;
// a file that changed before (or while) it was sent must not end up in a layer keyed
// by its old content. The real VM cannot be raced deterministically; this peer can.
#include "runner/payload_send.h"

#include "common/fs.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace kiln;
using namespace kiln::runner;
using proto::MsgType;
namespace stdfs = std::filesystem;

namespace {

// What the guest end of the channel received.
struct Received {
  std::vector<proto::PutFile> files;
  std::string file_bytes;  ///< every file_data frame, in order
  std::string error;
};

class PayloadSend : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-payload-send-test-");
    ASSERT_TRUE(d.ok()) << d.error().message;
    dir_.emplace(std::move(*d));
  }
  stdfs::path path(const std::string& name) const { return dir_->path() / name; }
  void write(const std::string& name, const std::string& text) const {
    ASSERT_TRUE(fs::write_file_atomic(path(name), text));
  }
  // Queue `payload` on a client whose peer decodes every frame until the client hangs up.
  Result<size_t> send(const Payload& payload, Received& got) const {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    std::thread guest([&got, fd = fds[1]] {
      proto::FrameDecoder decoder;
      char buf[65536];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) {
        if (!decoder.feed(buf, static_cast<size_t>(n))) {
          got.error = decoder.error();
          break;
        }
        while (auto f = decoder.next()) {
          if (f->type == MsgType::put_file) got.files.push_back(*proto::decode_put_file(f->payload));
          if (f->type == MsgType::file_data) got.file_bytes += f->payload;
        }
      }
      ::close(fd);
    });
    AgentClient agent(fds[0], [] { return std::optional<std::string>(); });
    auto queued = queue_payload(agent, payload);
    auto flushed = agent.flush(Clock::now() + std::chrono::seconds(30));
    ::shutdown(fds[0], SHUT_WR);
    guest.join();
    ::close(fds[0]);
    EXPECT_TRUE(flushed) << flushed.error().message;
    EXPECT_EQ(got.error, "");
    return queued;
  }
  std::optional<fs::TempDir> dir_;
};

}  // namespace

TEST_F(PayloadSend, SendsEachFileAsItsHeaderThenItsBytes) {
  const std::string big(700 * 1024 + 3, 'b');  // several file_data chunks
  write("small", "small file\n");
  write("big", big);
  Payload payload;
  ASSERT_TRUE(payload.add_path(path("small")));
  ASSERT_TRUE(payload.add_path(path("big")));
  ASSERT_TRUE(payload.content_digest());
  Received got;
  auto sent = send(payload, got);
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(*sent, payload.entries().size());
  ASSERT_EQ(got.files.size(), 2u);
  EXPECT_EQ(got.files[0].path, path("small").string());
  EXPECT_EQ(got.files[0].size, 11u);
  EXPECT_EQ(got.files[1].size, big.size());
  EXPECT_TRUE(got.file_bytes == "small file\n" + big) << "the guest got other bytes than the files hold";
}

TEST_F(PayloadSend, AFileChangedAfterTheDigestKeyedTheLayerFailsTheSend) {
  write("data", "old content\n");
  Payload payload;
  ASSERT_TRUE(payload.add_path(path("data")));
  ASSERT_TRUE(payload.content_digest());  // keys the payload layer
  write("data", "NEW CONTENT\n");         // same size: nothing but the bytes tell
  Received got;
  auto sent = send(payload, got);
  ASSERT_FALSE(sent) << "a layer keyed by the old content would hold the new one";
  EXPECT_NE(sent.error().message.find(path("data").string() + " changed while kiln was sending it to the guest; rerun"),
            std::string::npos)
      << sent.error().message;
}

TEST_F(PayloadSend, AFileThatGrewBeforeTheDigestFailsTheSend) {
  // The size sent is the one listed; the digest covered more: the guest would get a
  // file cut short under a key that promises the whole of it.
  write("data", "old\n");
  Payload payload;
  ASSERT_TRUE(payload.add_path(path("data")));
  write("data", "old\nand more\n");
  ASSERT_TRUE(payload.content_digest());
  Received got;
  auto sent = send(payload, got);
  ASSERT_FALSE(sent);
  EXPECT_NE(sent.error().message.find("changed while kiln was sending it to the guest; rerun"), std::string::npos)
      << sent.error().message;
}

TEST_F(PayloadSend, WithoutADigestTheFileIsSentAsItIsNow) {
  // No layer keyed it (layers off): sending today's content is right.
  write("data", "old content\n");
  Payload payload;
  ASSERT_TRUE(payload.add_path(path("data")));
  write("data", "NEW CONTENT\n");
  Received got;
  auto sent = send(payload, got);
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(got.file_bytes, "NEW CONTENT\n");
}
