#include "agent/exec_session.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <vector>

#include "agent/log.h"
#include "agent/spawn.h"
#include "agent/stdin_feed.h"
#include "agent/terminal.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

constexpr size_t kChunk = 64 * 1024;       // per output frame
constexpr size_t kDrainBudget = 8u << 20;  // per stream, after the command exited

proto::Exit exit_from_status(int status) {
  proto::Exit e;
  if (WIFSIGNALED(status)) {
    e.signaled = true;
    e.code = WTERMSIG(status);
  } else {
    e.code = WEXITSTATUS(status);
  }
  return e;
}

// The kernel's count of processes its OOM killer ended since boot ("oom_kill N" in
// /proc/vmstat, Linux 4.13+); 0 if it cannot be read. Its change across a command
// tells an OOM kill from any other SIGKILL without parsing the console.
uint64_t oom_kills_so_far() {
  UniqueFd fd(::open("/proc/vmstat", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return 0;
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof buf)) > 0 && text.size() < (1u << 20);)
    text.append(buf, static_cast<size_t>(n));
  size_t at = text.find("\noom_kill ");
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + 10, nullptr, 10);
}

// One output stream of the command: a pipe read end, the frame type it maps to, and
// how many bytes the command wrote to it as far as the agent knows.
struct Stream {
  UniqueFd fd;
  proto::MsgType type;
  uint64_t bytes = 0;
};

// Reads one chunk (if any) and forwards it. Returns false once the stream has ended.
bool forward_chunk(Channel& channel, Stream& s) {
  static std::vector<char> buf(kChunk);
  ssize_t n = ::read(s.fd.get(), buf.data(), buf.size());
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) {
    s.fd.reset();
    return false;
  }
  s.bytes += static_cast<uint64_t>(n);  // written by the command whether or not the host gets it
  Status st = channel.send(s.type, std::string_view(buf.data(), static_cast<size_t>(n)));
  if (!st.is_ok()) log("lost command output: ", st.message());
  return true;
}

// After the command exited: forward what is already buffered, without waiting for EOF.
// What is still in the pipe after the budget counts as written: the host sees it missing.
void drain(Channel& channel, Stream& s) {
  size_t budget = kDrainBudget;
  while (s.fd.valid() && budget > 0) {
    pollfd pfd{s.fd.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 0) <= 0 || (pfd.revents & (POLLIN | POLLHUP | POLLERR)) == 0) break;
    if (!forward_chunk(channel, s)) return;
    budget = budget > kChunk ? budget - kChunk : 0;
  }
  int unread = 0;
  if (s.fd.valid() && ::ioctl(s.fd.get(), FIONREAD, &unread) == 0 && unread > 0) {
    log("dropping ", unread, " bytes of ", proto::type_name(s.type),
        " still in the pipe after the command exited (a background process writing to it?)");
    s.bytes += static_cast<uint64_t>(unread);
  }
}

void kill_command(pid_t pid) {
  ::kill(-pid, SIGKILL);  // its process group (setsid made pid the group leader)
  ::kill(pid, SIGKILL);   // in case setsid had not run yet
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

std::optional<Pipe> make_pipe(std::string* error) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    *error = sys_error("not run: pipe");
    return std::nullopt;
  }
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// What the host sent for the running command: its input, and a terminal's new size
// (`terminal` is the master, or -1 when the command has none). True once it asked to
// detach: nothing after that is for this command.
bool take_input(Channel& channel, std::optional<StdinFeed>& feed, int terminal) {
  while (std::optional<proto::Frame> f = channel.pop_stream()) {
    if (f->type == proto::MsgType::detach) return true;
    if (f->type == proto::MsgType::resize) {
      std::optional<proto::WindowSize> size = proto::decode_window_size(f->payload);
      if (!size) log("dropping a malformed resize frame");
      if (size && terminal >= 0) resize_terminal(terminal, *size);
      continue;
    }
    if (feed) feed->accept(*f);
  }
  return false;
}

// How supervising the command ended.
struct Ended {
  enum class How { exited, poweroff, detached } how = How::exited;
  int status = 0;  ///< wait status, when exited
};

// The command while it runs: output to the host, the host's stdin to the command,
// until it exits, a poweroff request kills it or a detach request leaves it be.
Ended supervise(Channel& channel, Reaper& reaper, pid_t pid, Stream& out, Stream& err,
                std::optional<StdinFeed>& feed, int terminal) {
  ::fcntl(out.fd.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err.fd.get(), F_SETFL, O_NONBLOCK);
  bool channel_usable = true;
  for (;;) {
    if (channel.contains(proto::MsgType::poweroff)) {
      kill_command(pid);
      return {Ended::How::poweroff};
    }
    if (take_input(channel, feed, terminal)) return {Ended::How::detached};
    if (feed) {
      feed->write_pending();
      if (uint32_t grant = feed->take_grant())
        (void)channel.send(proto::MsgType::stdin_credit, proto::encode(proto::StdinCredit{grant}));
    }
    pollfd fds[5];
    nfds_t nfds = 0;
    auto add = [&](int fd, short events) {
      if (fd < 0) return -1;
      fds[nfds] = pollfd{fd, events, 0};
      return static_cast<int>(nfds++);
    };
    int i_out = add(out.fd.get(), POLLIN);
    int i_err = add(err.fd.get(), POLLIN);
    int i_chan = add(channel_usable && !channel.queue_full() ? channel.fd() : -1, POLLIN);
    int i_reap = add(reaper.fd(), POLLIN);
    (void)add(feed ? feed->fd_waiting_to_write() : -1, POLLOUT);  // write_pending() at the top
    if (::poll(fds, nfds, -1) < 0) {
      if (errno == EINTR) continue;
      log(sys_error("poll during exec"));
      ::usleep(10'000);
      continue;
    }
    auto ready = [&](int i) { return i >= 0 && fds[i].revents != 0; };
    if (ready(i_out)) forward_chunk(channel, out);
    if (ready(i_err)) forward_chunk(channel, err);
    if (ready(i_chan)) {
      channel.read_available();
      // A hung-up tty polls readable forever; stop watching it for this command.
      if (channel.hung_up()) channel_usable = false;
    }
    if (ready(i_reap))
      if (std::optional<int> status = reaper.reap()) return {Ended::How::exited, *status};
  }
}

// The command's stdio: pipes, or one terminal for all three (StdinMode::terminal).
struct CommandStdio {
  std::optional<Pipe> in, out, err;
  std::optional<Terminal> terminal;
};

bool open_stdio(const proto::Exec& req, proto::WindowSize window, CommandStdio& io, std::string* error) {
  if (req.stdin_mode == proto::StdinMode::terminal) {
    io.terminal = open_terminal(window, error);
    return io.terminal.has_value();
  }
  io.out = make_pipe(error);
  io.err = io.out ? make_pipe(error) : std::nullopt;
  if (io.err && req.stdin_mode == proto::StdinMode::stream) io.in = make_pipe(error);
  return io.out && io.err && (req.stdin_mode != proto::StdinMode::stream || io.in);
}

ChildStdio child_ends(const CommandStdio& io) {
  if (io.terminal) {
    const int tty = io.terminal->slave.get();
    return {tty, tty, tty, true};
  }
  return {io.in ? io.in->read.get() : -1, io.out->write.get(), io.err->write.get(), false};
}

}  // namespace

ExecResult run_exec(Channel& channel, Reaper& reaper, const proto::Exec& req, proto::WindowSize window) {
  ExecResult result;
  CommandStdio io;
  if (!open_stdio(req, window, io, &result.error)) return result;

  const uint64_t oom_before = oom_kills_so_far();
  Spawned spawned = spawn_command(req, child_ends(io), reaper);
  if (spawned.kind == Spawned::Kind::not_run) {
    result.error = spawned.error;
    return result;
  }
  if (spawned.kind == Spawned::Kind::exec_failed) {
    result.kind = ExecResult::Kind::exec_failed;
    result.failed = spawned.failed;
    return result;
  }
  // Only the command holds these ends now: EOF / EPIPE (a terminal's EIO) follow it, not us.
  std::optional<StdinFeed> feed;
  Stream out_s{{}, proto::MsgType::stdout_data};
  Stream err_s{{}, proto::MsgType::stderr_data};
  int terminal = -1;
  if (io.terminal) {
    io.terminal->slave.reset();
    terminal = io.terminal->master.get();
    feed.emplace(UniqueFd(::fcntl(terminal, F_DUPFD_CLOEXEC, 0)));  // keystrokes in, under credit
    out_s.fd = std::move(io.terminal->master);                       // everything it shows, out
  } else {
    io.out->write.reset();
    io.err->write.reset();
    if (io.in) {
      io.in->read.reset();
      feed.emplace(std::move(io.in->write));
    }
    out_s.fd = std::move(io.out->read);
    err_s.fd = std::move(io.err->read);
  }

  const Ended ended = supervise(channel, reaper, spawned.pid, out_s, err_s, feed, terminal);
  if (ended.how == Ended::How::poweroff) {
    result.kind = ExecResult::Kind::poweroff;
    return result;
  }
  if (ended.how == Ended::How::detached) {
    // Its ends stay open for as long as the VM lives: closing them would hang up its
    // terminal or break its pipes, and end the very process the host wants kept.
    result.kind = ExecResult::Kind::detached;
    result.detached.pid = static_cast<uint32_t>(spawned.pid);
    for (Stream* s : {&out_s, &err_s})
      if (s->fd.valid()) result.held.push_back(std::move(s->fd));
    if (feed) result.held.push_back(feed->release());
    return result;
  }
  feed.reset();  // a daemon the command left behind reads EOF, not a pipe kept open forever
  drain(channel, out_s);
  drain(channel, err_s);
  result.kind = ExecResult::Kind::exited;
  result.exit = exit_from_status(ended.status);
  result.exit.stdout_bytes = out_s.bytes;
  result.exit.stderr_bytes = err_s.bytes;
  const uint64_t oom_after = oom_kills_so_far();
  const uint64_t oom_kills = oom_after > oom_before ? oom_after - oom_before : 0;
  result.exit.oom_kills = oom_kills > 0xffffffffu ? 0xffffffffu : static_cast<uint32_t>(oom_kills);
  return result;
}

}  // namespace kiln::agent
