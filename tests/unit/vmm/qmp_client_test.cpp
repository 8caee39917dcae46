// QmpClient against a real qemu (`-M none`, ~50 ms to start) and against scripted peers.
#include "vmm/qemu/qmp_client.h"

#include "common/fs.h"
#include "common/subprocess.h"
#include "vmm/qemu/qemu_binary.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

namespace kiln::vmm::qemu {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

/// qemu -M none with a QMP socket in a temp dir; killed (and the dir removed) at scope exit.
class RealQemu : public ::testing::Test {
 protected:
  void SetUp() override {
    auto binary = find_qemu_binary();
    if (!binary) GTEST_SKIP() << binary.error().message;
    auto dir = fs::TempDir::create("/tmp", "kiln-qmp-test-");
    ASSERT_TRUE(dir) << dir.error().message;
    dir_.emplace(std::move(*dir));
    socket_ = dir_->path() / "qmp.sock";
    auto child = ChildProcess::spawn({binary->string(), "-M", "none", "-display", "none", "-nodefaults",
                                      "-qmp", "unix:" + socket_.string() + ",server=on,wait=off"},
                                     SpawnOptions{});
    ASSERT_TRUE(child) << child.error().message;
    qemu_.emplace(std::move(*child));
  }
  Result<QmpClient> connect() {
    return QmpClient::connect(socket_, deadline_after(10s), [this] {
      int status = 0;
      return !qemu_->poll_exited(&status);
    });
  }
  std::optional<fs::TempDir> dir_;
  std::filesystem::path socket_;
  std::optional<ChildProcess> qemu_;
};

TEST_F(RealQemu, NegotiatesCapabilitiesAndReadsGreeting) {
  auto qmp = connect();
  ASSERT_TRUE(qmp) << qmp.error().message;
  const json& g = qmp->greeting();
  ASSERT_TRUE(g["QMP"]["version"]["qemu"].contains("major"));
  EXPECT_GE(g["QMP"]["version"]["qemu"]["major"].get<int>(), 7);
}

TEST_F(RealQemu, QueryStatus) {
  auto qmp = connect();
  ASSERT_TRUE(qmp) << qmp.error().message;
  auto status = qmp->execute("query-status", deadline_after(5s));
  ASSERT_TRUE(status) << status.error().message;
  EXPECT_TRUE((*status)["status"].is_string()) << status->dump();
}

TEST_F(RealQemu, ErrorReplyBecomesResultErrorAndStreamStaysInSync) {
  auto qmp = connect();
  ASSERT_TRUE(qmp) << qmp.error().message;
  auto bad = qmp->execute("no-such-command", deadline_after(5s));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("no-such-command"), std::string::npos) << bad.error().message;
  EXPECT_NE(bad.error().message.find("CommandNotFound"), std::string::npos) << bad.error().message;
  auto bad_args = qmp->execute("query-status", {{"bogus", 1}}, deadline_after(5s));
  ASSERT_FALSE(bad_args);
  auto good = qmp->execute("query-status", deadline_after(5s));
  EXPECT_TRUE(good) << good.error().message;
}

TEST_F(RealQemu, EventsAreQueuedAndAwaited) {
  auto qmp = connect();
  ASSERT_TRUE(qmp) << qmp.error().message;
  ASSERT_TRUE(qmp->execute("stop", deadline_after(5s)));
  auto ev = qmp->wait_event("STOP", deadline_after(5s));
  ASSERT_TRUE(ev) << ev.error().message;
  EXPECT_EQ((*ev)["event"], "STOP");
}

TEST_F(RealQemu, PassesFileDescriptors) {
  auto qmp = connect();
  ASSERT_TRUE(qmp) << qmp.error().message;
  auto without = qmp->execute("getfd", {{"fdname", "x"}}, deadline_after(5s));
  EXPECT_FALSE(without);  // qemu insists on an fd for getfd
  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto with = qmp->execute_with_fd("getfd", {{"fdname", "x"}}, fd.get(), deadline_after(5s));
  ASSERT_TRUE(with) << with.error().message;
  EXPECT_TRUE(qmp->execute("closefd", {{"fdname", "x"}}, deadline_after(5s)));
}

TEST_F(RealQemu, QemuExitingIsAnErrorNotAHang) {
  auto qmp = connect();
  ASSERT_TRUE(qmp) << qmp.error().message;
  (void)qmp->execute("quit", deadline_after(5s));  // may or may not get its reply out
  auto after = qmp->execute("query-status", deadline_after(5s));
  ASSERT_FALSE(after);
  EXPECT_NE(after.error().kind, ErrorKind::timeout) << after.error().message;
}

// --- scripted peers -------------------------------------------------------------------

struct Pair {
  UniqueFd client, server;
};
Pair socket_pair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}
void put(const UniqueFd& fd, const std::string& s) { ASSERT_EQ(::write(fd.get(), s.data(), s.size()), ssize_t(s.size())); }

const std::string kGreeting = R"({"QMP": {"version": {}, "capabilities": []}})"
                              "\r\n";

TEST(QmpClient, SkipsStaleRepliesAndRecordsEvents) {
  auto p = socket_pair();
  // Ids are sequential from 1: qmp_capabilities is 1, the next command 2.
  put(p.server, kGreeting + "{\"return\": {}, \"id\": 1}\r\n" + R"({"event": "STOP", "data": {}})" "\r\n" +
                    R"({"return": {"stale": true}, "id": 99})" "\r\n" + R"({"return": {"x": 1}, "id": 2})" "\r\n");
  auto qmp = QmpClient::handshake(std::move(p.client), deadline_after(2s));
  ASSERT_TRUE(qmp) << qmp.error().message;
  auto r = qmp->execute("anything", deadline_after(2s));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["x"], 1);
  ASSERT_EQ(qmp->events().size(), 1u);
  auto ev = qmp->wait_event("STOP", deadline_after(2s));
  ASSERT_TRUE(ev);
  EXPECT_TRUE(qmp->events().empty());
}

TEST(QmpClient, GarbageIsAnError) {
  auto p = socket_pair();
  put(p.server, "this is not json\n");
  auto qmp = QmpClient::handshake(std::move(p.client), deadline_after(2s));
  ASSERT_FALSE(qmp);
  EXPECT_NE(qmp.error().message.find("not a QMP message"), std::string::npos) << qmp.error().message;
}

TEST(QmpClient, NonGreetingIsAnError) {
  auto p = socket_pair();
  put(p.server, "{\"return\": {}}\n");
  EXPECT_FALSE(QmpClient::handshake(std::move(p.client), deadline_after(2s)));
}

TEST(QmpClient, OversizedMessageIsRefused) {
  auto p = socket_pair();
  std::thread writer([fd = p.server.get()] {
    std::string chunk(64 * 1024, 'x');
    for (size_t sent = 0; sent <= QmpClient::kMaxMessageBytes;) {
      ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n <= 0) return;  // the client gave up and closed: expected
      sent += static_cast<size_t>(n);
    }
  });
  auto qmp = QmpClient::handshake(std::move(p.client), deadline_after(5s));
  writer.join();
  ASSERT_FALSE(qmp);
  EXPECT_NE(qmp.error().message.find("longer than"), std::string::npos) << qmp.error().message;
}

TEST(QmpClient, DeadlineOnASocketNobodyAnswers) {
  auto dir = fs::TempDir::create("/tmp", "kiln-qmp-test-");
  ASSERT_TRUE(dir);
  auto path = dir->path() / "silent.sock";
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);  // connections queue, nobody ever speaks
  auto t0 = Clock::now();
  auto qmp = QmpClient::connect(path, deadline_after(300ms));
  auto took = Clock::now() - t0;
  ASSERT_FALSE(qmp);
  EXPECT_EQ(qmp.error().kind, ErrorKind::timeout) << qmp.error().message;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST(QmpClient, MissingSocketTimesOutOrStopsWhenPeerDied) {
  auto t0 = Clock::now();
  auto r = QmpClient::connect("/tmp/kiln-no-such-dir/qmp.sock", deadline_after(100ms));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::timeout);
  EXPECT_LT(Clock::now() - t0, 1s);
  auto dead = QmpClient::connect("/tmp/kiln-no-such-dir/qmp.sock", deadline_after(10s), [] { return false; });
  ASSERT_FALSE(dead);
  EXPECT_NE(dead.error().message.find("exited"), std::string::npos) << dead.error().message;
  EXPECT_LT(Clock::now() - t0, 1s);
}

TEST(QmpClient, OverlongSocketPathIsRejected) {
  auto r = QmpClient::connect("/tmp/" + std::string(200, 'a'), deadline_after(100ms));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("longer than"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace kiln::vmm::qemu
