// ShareServer over a real socketpair, as the engines connect it: requests framed by
// their length however the bytes arrive, replies in order, large replies through a
// full socket, and the ways serving ends (stop, hang-up, protocol error).
#include "share/share_server.h"

#include "tests/unit/share/fuse_test_client.h"
#include "tests/unit/share/host_tree.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

namespace kiln::share {
namespace {

using namespace std::chrono_literals;
using testing::HostTree;
using testing::Reply;

class Server : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    peer_.reset(fds[1]);
    tree_.file("f", "served over a socket\n");
    auto s = ShareServer::start(UniqueFd(fds[0]), {tree_.path()});
    ASSERT_TRUE(s.ok()) << s.error().message;
    server_ = std::move(*s);
  }

  void send_all(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(peer_.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << std::strerror(errno);
      off += static_cast<size_t>(n);
    }
  }

  /// Exactly `size` bytes from the server, or fewer if it closed the socket first or
  /// nothing came for 10 s.
  std::string receive(size_t size) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (out.size() < size && std::chrono::steady_clock::now() < deadline) {
      pollfd p{peer_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[65536];
      const ssize_t n = ::read(peer_.get(), buf, std::min(sizeof buf, size - out.size()));
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  /// One whole reply, by its header's length.
  Reply receive_reply(uint64_t unique) {
    std::string bytes = receive(sizeof(fuse_out_header));
    if (bytes.size() < sizeof(fuse_out_header)) return {};
    fuse_out_header h{};
    std::memcpy(&h, bytes.data(), sizeof h);
    bytes += receive(h.len - sizeof h);
    return testing::parse_reply(bytes, unique);
  }

  /// True once the server closed its end (the peer reads end-of-file).
  bool peer_sees_close() {
    char c;
    pollfd p{peer_.get(), POLLIN, 0};
    return ::poll(&p, 1, 10000) == 1 && ::read(peer_.get(), &c, 1) == 0;
  }

  static std::string init_request(uint64_t unique) {
    fuse_init_in in{};
    in.major = 7;
    in.minor = 36;
    in.flags = FUSE_MAX_PAGES;
    return testing::request_bytes(FUSE_INIT, unique, 0, testing::bytes_of(in));
  }

  HostTree tree_;
  UniqueFd peer_;
  std::unique_ptr<ShareServer> server_;
};

TEST_F(Server, AnswersRequestsHoweverTheirBytesArrive) {
  // INIT, then LOOKUP of root 0 and of "f" in it, then a FORGET (no reply) and a
  // GETATTR, all in one stream cut into 1..7-byte pieces.
  std::string stream = init_request(1) + testing::request_bytes(FUSE_LOOKUP, 2, kRootNodeId, testing::name_z("0"));
  for (size_t i = 0, piece = 1; i < stream.size(); i += piece, piece = piece % 7 + 1) {
    send_all(stream.substr(i, piece));
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(receive_reply(1).error, 0);
  const Reply root = receive_reply(2);
  ASSERT_EQ(root.error, 0);
  const uint64_t root_id = root.as<fuse_entry_out>().nodeid;

  fuse_forget_in forget{};
  forget.nlookup = 1;
  send_all(testing::request_bytes(FUSE_LOOKUP, 3, root_id, testing::name_z("f")) +
           testing::request_bytes(FUSE_FORGET, 4, 999, testing::bytes_of(forget)) +
           testing::request_bytes(FUSE_GETATTR, 5, root_id, std::string(16, '\0')));
  const Reply f = receive_reply(3);
  ASSERT_EQ(f.error, 0);
  EXPECT_EQ(f.as<fuse_entry_out>().attr.size, 21u);
  const Reply attr = receive_reply(5);
  ASSERT_EQ(attr.error, 0) << "the FORGET between got a reply, or this one none";
  EXPECT_EQ(attr.as<fuse_attr_out>().attr.mode & S_IFMT, uint32_t{S_IFDIR});

  const ShareServer::Stats stats = server_->stats();
  EXPECT_EQ(stats.requests, 5u);
  EXPECT_EQ(stats.bytes_read, stream.size() + 3 * sizeof(fuse_in_header) + 2 + 8 + 16);
  EXPECT_EQ(stats.failure, "");
  EXPECT_TRUE(server_->serving());
}

TEST_F(Server, ALargeReplyWaitsForThePeerToRead) {
  std::string big(kMaxRead, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i % 251);
  tree_.file("big", big);
  send_all(init_request(1));
  ASSERT_EQ(receive_reply(1).error, 0);
  send_all(testing::request_bytes(FUSE_LOOKUP, 2, kRootNodeId, testing::name_z("0")));
  const uint64_t root = receive_reply(2).as<fuse_entry_out>().nodeid;
  send_all(testing::request_bytes(FUSE_LOOKUP, 3, root, testing::name_z("big")));
  const uint64_t node = receive_reply(3).as<fuse_entry_out>().nodeid;
  fuse_open_in open{};
  send_all(testing::request_bytes(FUSE_OPEN, 4, node, testing::bytes_of(open)));
  const uint64_t fh = receive_reply(4).as<fuse_open_out>().fh;

  fuse_read_in read{};
  read.fh = fh;
  read.size = kMaxRead;
  send_all(testing::request_bytes(FUSE_READ, 5, node, testing::bytes_of(read)));
  std::this_thread::sleep_for(200ms);  // the reply fills the socket; the server waits
  EXPECT_TRUE(server_->serving());
  const Reply r = receive_reply(5);
  EXPECT_EQ(r.error, 0);
  EXPECT_TRUE(r.payload == big) << "1 MiB READ came back with " << r.payload.size() << " bytes, or other ones";
}

TEST_F(Server, StopEndsServingEvenWhileAReplyIsBlockedAndIsIdempotent) {
  tree_.file("big", std::string(kMaxRead, 'b'));
  send_all(init_request(1));
  ASSERT_EQ(receive_reply(1).error, 0);
  send_all(testing::request_bytes(FUSE_LOOKUP, 2, kRootNodeId, testing::name_z("0")));
  const uint64_t root = receive_reply(2).as<fuse_entry_out>().nodeid;
  send_all(testing::request_bytes(FUSE_LOOKUP, 3, root, testing::name_z("big")));
  const uint64_t node = receive_reply(3).as<fuse_entry_out>().nodeid;
  fuse_open_in open{};
  send_all(testing::request_bytes(FUSE_OPEN, 4, node, testing::bytes_of(open)));
  const uint64_t fh = receive_reply(4).as<fuse_open_out>().fh;
  fuse_read_in read{};
  read.fh = fh;
  read.size = kMaxRead;
  send_all(testing::request_bytes(FUSE_READ, 5, node, testing::bytes_of(read)));
  std::this_thread::sleep_for(100ms);  // never read: the server blocks sending

  const auto start = std::chrono::steady_clock::now();
  server_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_FALSE(server_->serving());
  server_->stop();
  EXPECT_EQ(server_->stats().failure, "") << "a stop is not a failure";
}

TEST_F(Server, PeerHangUpEndsServingQuietly) {
  send_all(init_request(1));
  ASSERT_EQ(receive_reply(1).error, 0);
  peer_.reset();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (server_->serving() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(server_->serving());
  EXPECT_EQ(server_->stats().failure, "");
  EXPECT_EQ(server_->stats().requests, 1u);
}

TEST_F(Server, AHangUpInTheMiddleOfARequestIsReported) {
  send_all(init_request(1).substr(0, 50));
  ::shutdown(peer_.get(), SHUT_WR);
  EXPECT_TRUE(peer_sees_close());
  server_->stop();
  EXPECT_NE(server_->stats().failure.find("middle of a request (50 bytes"), std::string::npos)
      << server_->stats().failure;
}

TEST_F(Server, AnOversizedRequestIsAProtocolErrorThatEndsTheShare) {
  send_all(init_request(1));
  ASSERT_EQ(receive_reply(1).error, 0);
  fuse_in_header h{};
  h.len = kMaxMessage + 1;
  h.opcode = FUSE_WRITE;
  send_all(testing::bytes_of(h));
  EXPECT_TRUE(peer_sees_close()) << "the server kept the socket open after a protocol error";
  server_->stop();
  const std::string failure = server_->stats().failure;
  EXPECT_NE(failure.find("protocol error"), std::string::npos) << failure;
  EXPECT_NE(failure.find(std::to_string(kMaxMessage + 1)), std::string::npos) << failure;
}

TEST_F(Server, ARequestShorterThanItsHeaderIsAProtocolError) {
  fuse_in_header h{};
  h.len = 12;
  send_all(testing::bytes_of(h));
  EXPECT_TRUE(peer_sees_close());
  server_->stop();
  EXPECT_NE(server_->stats().failure.find("request of 12 bytes"), std::string::npos) << server_->stats().failure;
}

TEST(ServerStart, RefusesAMissingSocketOrRoot) {
  EXPECT_FALSE(ShareServer::start(UniqueFd(), {"/"}).ok());
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd peer(fds[1]);
  auto s = ShareServer::start(UniqueFd(fds[0]), {"/no/such/kiln/share/root"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("/no/such/kiln/share/root"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace kiln::share
