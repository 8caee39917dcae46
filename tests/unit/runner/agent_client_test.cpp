// The host side of the agent channel against a real socket whose far end plays
// a hostile guest: garbage, oversized frames, silence, hang-ups.
#include "runner/agent_client.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace kiln;
using namespace kiln::runner;
using proto::MsgType;

namespace {

class AgentClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds_), 0); }
  void TearDown() override {
    ::close(fds_[0]);
    if (fds_[1] >= 0) ::close(fds_[1]);
  }
  void guest_sends(const std::string& bytes) {
    ASSERT_EQ(::write(fds_[1], bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  AgentClient client(std::optional<std::string> dead = std::nullopt) {
    return AgentClient(fds_[0], [dead] { return dead; });
  }
  static Deadline soon() { return Clock::now() + std::chrono::seconds(5); }
  int fds_[2] = {-1, -1};
};

}  // namespace

TEST_F(AgentClientTest, GarbageIsAClearError) {
  auto agent = client();
  guest_sends("\xde\xad\xbe\xef this is not kiln protocol");
  auto f = agent.next_frame(soon());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("garbage on the agent channel"), std::string::npos) << f.error().message;
}

TEST_F(AgentClientTest, OversizedFrameIsRefusedFromItsHeader) {
  auto agent = client();
  std::string header = proto::encode_frame(MsgType::stdout_data, "");
  header[7] = '\x7f';  // claims ~2 GiB
  guest_sends(header);
  auto f = agent.next_frame(soon());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("exceeds"), std::string::npos) << f.error().message;
}

TEST_F(AgentClientTest, HostOnlyMessageTypeFromTheGuestIsRejected) {
  auto agent = client();
  guest_sends(proto::encode_frame(MsgType::exec, proto::encode(proto::Exec{{"x"}, {}, "/", proto::StdinMode::null, {}})));
  auto f = agent.next_frame(soon());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("unknown type"), std::string::npos) << f.error().message;
}

TEST_F(AgentClientTest, SilenceEndsAtTheDeadlineAsATimeout) {
  auto agent = client();
  auto start = Clock::now();
  auto f = agent.next_frame(Clock::now() + std::chrono::milliseconds(300));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().kind, ErrorKind::timeout);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

TEST_F(AgentClientTest, ADeadVmEndsTheWaitWithItsReason) {
  auto agent = client("qemu was killed by signal 9");
  auto f = agent.next_frame(soon());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("killed by signal 9"), std::string::npos) << f.error().message;
}

TEST_F(AgentClientTest, GuestHangUpIsAnError) {
  auto agent = client();
  ::close(fds_[1]);
  fds_[1] = -1;
  auto f = agent.next_frame(soon());
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("closed its channel"), std::string::npos) << f.error().message;
}

TEST_F(AgentClientTest, HandshakeSkipsRepeatedHellos) {
  auto agent = client();
  std::string hello = proto::encode_frame(MsgType::hello, proto::encode(proto::Hello{2, "t", 2, 0}));
  guest_sends(hello + hello + hello + proto::encode_frame(MsgType::ok, ""));
  auto h = agent.handshake(soon());
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->agent_version, "t");
  // Exactly one hello_ack went to the guest: header + u32 version + u64 features.
  char buf[64];
  ssize_t n = ::read(fds_[1], buf, sizeof buf);
  EXPECT_EQ(n, static_cast<ssize_t>(proto::kHeaderSize + 12));
  EXPECT_EQ(static_cast<uint8_t>(buf[3]), static_cast<uint8_t>(MsgType::hello_ack));
}

TEST_F(AgentClientTest, HandshakeAnswersWithTheNewestCommonVersionAndTheSharedFeatures) {
  auto agent = client();
  // An agent newer than this kiln: speaks 1..9, offers stdin and two bits nobody knows yet.
  const uint64_t offered = proto::feature::stdin_stream | (1ull << 40) | (1ull << 63);
  guest_sends(proto::encode_frame(MsgType::hello, proto::encode(proto::Hello{9, "new", 1, offered})) +
              proto::encode_frame(MsgType::ok, ""));
  ASSERT_TRUE(agent.handshake(soon()).ok());
  char buf[64];
  ASSERT_EQ(::read(fds_[1], buf, sizeof buf), static_cast<ssize_t>(proto::kHeaderSize + 12));
  auto ack = proto::decode_hello_ack(std::string_view(buf + proto::kHeaderSize, 12));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->protocol_version, 2u);  // this kiln's newest
  EXPECT_EQ(ack->features, proto::feature::stdin_stream);
}

TEST_F(AgentClientTest, AnAgentFromAnOlderKilnIsRefusedNamingBothVersions) {
  auto agent = client();
  // Protocol 1's hello: u32 version, str agent version.
  guest_sends(proto::encode_frame(MsgType::hello, proto::Writer().u32(1).str("0.0.1").take()));
  auto h = agent.handshake(soon());
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find("kiln-agent 0.0.1) speaks agent protocol 1, this kiln speaks 2"),
            std::string::npos)
      << h.error().message;
  char buf[64];
  EXPECT_EQ(::recv(fds_[1], buf, sizeof buf, MSG_DONTWAIT), -1) << "no hello_ack may go to an agent it cannot serve";
}

TEST_F(AgentClientTest, AnAgentTooNewIsRefusedNamingBothVersions) {
  auto agent = client();
  guest_sends(proto::encode_frame(MsgType::hello, proto::encode(proto::Hello{7, "9.0", 5, 0})));
  auto h = agent.handshake(soon());
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find("speaks agent protocol 5-7, this kiln speaks 2"), std::string::npos)
      << h.error().message;
}

TEST_F(AgentClientTest, AnAgentRefusingTheChoiceIsAnErrorWithItsReasonEscaped) {
  auto agent = client();
  guest_sends(proto::encode_frame(MsgType::hello, proto::encode(proto::Hello{2, "a\x1b[2Jb", 2, 0})) +
              proto::encode_frame(MsgType::error, proto::encode(proto::ErrorReply{"speaks 3\x1b]0;pwned\x07"})));
  auto h = agent.handshake(soon());
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find("kiln-agent a\\x1b[2Jb) refused"), std::string::npos) << h.error().message;
  EXPECT_NE(h.error().message.find("speaks 3\\x1b]0;pwned\\x07"), std::string::npos) << h.error().message;
  EXPECT_EQ(h.error().message.find('\x1b'), std::string::npos);
}

TEST_F(AgentClientTest, HandshakeEscapesTheAgentVersion) {
  auto agent = client();
  guest_sends(proto::encode_frame(MsgType::hello, proto::encode(proto::Hello{2, "1.0\r\x1b[31m", 2, 0})) +
              proto::encode_frame(MsgType::ok, ""));
  auto h = agent.handshake(soon());
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->agent_version, "1.0\\r\\x1b[31m");
}

TEST_F(AgentClientTest, RestatedAgreementIsThisBuildsVersionAndFeatures) {
  auto agent = client();
  agent.restate_agreement();
  guest_sends(proto::encode_frame(MsgType::ok, ""));
  ASSERT_TRUE(agent.expect_ok(soon(), "agreeing").ok());
  char buf[64];
  ASSERT_EQ(::read(fds_[1], buf, sizeof buf), static_cast<ssize_t>(proto::kHeaderSize + 12));
  EXPECT_EQ(static_cast<uint8_t>(buf[3]), static_cast<uint8_t>(MsgType::hello_ack));
  auto ack = proto::decode_hello_ack(std::string_view(buf + proto::kHeaderSize, 12));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->protocol_version, proto::kProtocolVersion);
  EXPECT_EQ(ack->features, proto::kFeatures);
}

TEST_F(AgentClientTest, ReadableInputEndsTheWaitWithoutAFrame) {
  auto agent = client();
  int in[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::write(in[1], "x", 1), 1);
  auto f = agent.next_frame_or_input(soon(), {in[0], -1});
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_FALSE(f->has_value());
  // A frame that is already there comes first.
  guest_sends(proto::encode_frame(MsgType::ok, ""));
  auto g = agent.next_frame_or_input(soon(), {in[0], -1});
  ASSERT_TRUE(g.ok()) << g.error().message;
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->type, MsgType::ok);
  ::close(in[0]);
  ::close(in[1]);
}

TEST_F(AgentClientTest, ErrorReplyNamesTheRequest) {
  auto agent = client();
  guest_sends(proto::encode_frame(MsgType::error, proto::encode(proto::ErrorReply{"disk full"})));
  auto r = agent.expect_ok(soon(), "placing /x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("placing /x"), std::string::npos);
  EXPECT_NE(r.error().message.find("disk full"), std::string::npos);
}

TEST_F(AgentClientTest, ErrorReplyIsEscaped) {
  auto agent = client();
  guest_sends(proto::encode_frame(MsgType::error, proto::encode(proto::ErrorReply{"no\x1b[2J\rspace"})));
  auto r = agent.expect_ok(soon(), "placing /x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("no\\x1b[2J\\rspace"), std::string::npos) << r.error().message;
}

namespace {

// Every frame the fake guest has received so far.
std::vector<proto::Frame> frames_to_guest(int fd) {
  proto::FrameDecoder d;
  char buf[65536];
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) break;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    EXPECT_TRUE(d.feed(buf, static_cast<size_t>(n))) << d.error();
  }
  std::vector<proto::Frame> out;
  while (auto f = d.next()) out.push_back(std::move(*f));
  return out;
}

}  // namespace

TEST_F(AgentClientTest, ShareGoesOutInItsTurnWithTheRootsInOrder) {
  auto agent = client();
  agent.restate_agreement();  // after a restore: this build's features, shares included
  ASSERT_TRUE(agent.queue_share({"/w/proj", "/w/build"}).ok());
  guest_sends(proto::encode_frame(MsgType::ok, "") + proto::encode_frame(MsgType::ok, ""));
  ASSERT_TRUE(agent.expect_ok(soon(), "agreeing").ok());
  ASSERT_TRUE(agent.expect_ok(soon(), "sharing").ok());
  auto frames = frames_to_guest(fds_[1]);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].type, MsgType::hello_ack);
  EXPECT_EQ(frames[1].type, MsgType::share);
  auto share = proto::decode_share(frames[1].payload);
  ASSERT_TRUE(share);
  EXPECT_EQ(share->roots, (std::vector<std::string>{"/w/proj", "/w/build"}));
}

TEST_F(AgentClientTest, ShareIsRefusedWhenTheAgentDidNotOfferIt) {
  auto agent = client();
  // An agent from before shares: offers stdin streaming only.
  guest_sends(proto::encode_frame(MsgType::hello, proto::encode(proto::Hello{2, "old", 2, proto::feature::stdin_stream})) +
              proto::encode_frame(MsgType::ok, ""));
  ASSERT_TRUE(agent.handshake(soon()).ok());
  ASSERT_EQ(frames_to_guest(fds_[1]).size(), 1u);  // the hello_ack
  auto r = agent.share({"/w/proj"}, soon());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("does not offer tree shares"), std::string::npos) << r.error().message;
  EXPECT_EQ(agent.queued(), 0u);
  EXPECT_TRUE(frames_to_guest(fds_[1]).empty());
}

TEST_F(AgentClientTest, ShareBeforeAnyAgreementIsAnInternalError) {
  auto agent = client();
  auto r = agent.queue_share({"/w/proj"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("before any protocol agreement"), std::string::npos) << r.error().message;
}

TEST_F(AgentClientTest, ShareRootsTheAgentWouldRefuseAreNotSent) {
  auto agent = client();
  agent.restate_agreement();
  for (const std::vector<std::string>& roots :
       {std::vector<std::string>{}, std::vector<std::string>{"relative"}, std::vector<std::string>{"/w/../etc"},
        std::vector<std::string>(proto::kMaxShareRoots + 1, "/w")}) {
    auto r = agent.queue_share(roots);
    EXPECT_FALSE(r.ok()) << roots.size();
  }
  EXPECT_EQ(agent.queued(), proto::kHeaderSize + 12);  // the hello_ack alone
  auto r = agent.queue_share({"/w/proj", "/w/a\nb"});
  ASSERT_TRUE(r.ok()) << r.error().message;  // odd, but a path the agent takes
  auto bad = agent.queue_share({"/w//x"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("cannot share \"/w//x\""), std::string::npos) << bad.error().message;
}

TEST_F(AgentClientTest, ShareFailureCarriesTheAgentsReason) {
  auto agent = client();
  agent.restate_agreement();
  guest_sends(proto::encode_frame(MsgType::ok, "") +
              proto::encode_frame(MsgType::error, proto::encode(proto::ErrorReply{"mount overlay on /w/proj: No such device"})));
  ASSERT_TRUE(agent.expect_ok(soon(), "agreeing").ok());
  auto r = agent.share({"/w/proj"}, soon());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("sharing the host's trees with the guest: the guest agent says: mount overlay on "
                                   "/w/proj: No such device"),
            std::string::npos)
      << r.error().message;
}
