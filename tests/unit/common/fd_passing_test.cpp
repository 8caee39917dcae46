// Messages with descriptors over SOCK_SEQPACKET: what arrives is bounded, and a message
// that breaks a bound leaks none of the descriptors it carried.
#include "common/fd_passing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

using namespace kiln;

namespace {

struct Pair {
  UniqueFd a, b;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

ino_t inode_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

Deadline soon() { return deadline_after(std::chrono::milliseconds(500)); }

}  // namespace

TEST(FdPassing, BytesAndDescriptorsArriveTogether) {
  Pair p;
  UniqueFd file(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(send_fd_message(p.a.get(), "hello", {file.get(), null.get()}));
  auto got = receive_fd_message(p.b.get(), 100, 4, soon());
  ASSERT_TRUE(got.ok() && got->has_value()) << (got.ok() ? "EOF" : got.error().message);
  EXPECT_EQ((*got)->bytes, "hello");
  ASSERT_EQ((*got)->fds.size(), 2u);
  EXPECT_EQ(inode_of((*got)->fds[0].get()), inode_of(file.get()));
  EXPECT_EQ(inode_of((*got)->fds[1].get()), inode_of(null.get()));
  EXPECT_EQ(::fcntl((*got)->fds[0].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST(FdPassing, TooManyDescriptorsAreRefusedAndClosed) {
  Pair p;
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const size_t before = open_fds();
  ASSERT_TRUE(send_fd_message(p.a.get(), "x", {null.get(), null.get(), null.get()}));
  auto got = receive_fd_message(p.b.get(), 100, 2, soon());
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("more than 2 descriptors"), std::string::npos) << got.error().message;
  EXPECT_EQ(open_fds(), before) << "descriptors of a refused message were left open";
}

TEST(FdPassing, ALongMessageIsRefusedAndItsDescriptorsClosed) {
  Pair p;
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const size_t before = open_fds();
  ASSERT_TRUE(send_fd_message(p.a.get(), std::string(200, 'y'), {null.get()}));
  auto got = receive_fd_message(p.b.get(), 100, 4, soon());
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().message.find("longer than 100 bytes"), std::string::npos) << got.error().message;
  EXPECT_EQ(open_fds(), before);
}

TEST(FdPassing, EndOfConnectionAndTimeout) {
  Pair p;
  auto nothing = receive_fd_message(p.b.get(), 100, 0, deadline_after(std::chrono::milliseconds(20)));
  ASSERT_FALSE(nothing.ok());
  EXPECT_EQ(nothing.error().kind, ErrorKind::timeout);
  p.a.reset();
  auto eof = receive_fd_message(p.b.get(), 100, 0, soon());
  ASSERT_TRUE(eof.ok()) << eof.error().message;
  EXPECT_FALSE(eof->has_value());
  EXPECT_FALSE(send_fd_message(p.b.get(), "").ok()) << "an empty message reads as the end of the connection";
}
