#include "agent/server.h"

#include <poll.h>
#include <sys/reboot.h>
#include <unistd.h>

#include <cerrno>
#include <exception>

#include "agent/exec_session.h"
#include "agent/guest_sync.h"
#include "agent/outputs.h"
#include "agent/log.h"
#include "agent/share_mount.h"
#include "common/clock.h"

#ifndef KILN_VERSION
#define KILN_VERSION "dev"
#endif

namespace kiln::agent {

namespace {

using proto::MsgType;

// The host decodes reply strings with a 4096-byte bound; stay below it.
std::string bounded(std::string s) {
  constexpr size_t kMax = 4000;
  if (s.size() > kMax) s.resize(kMax);
  return s;
}

std::string hex(uint64_t v) {
  const char* digits = "0123456789abcdef";
  std::string out;
  do {
    out.insert(out.begin(), digits[v & 0xf]);
    v >>= 4;
  } while (v != 0);
  return out;
}

}  // namespace

void power_off() {
  log("powering off");
  ::sync();
  ::reboot(RB_POWER_OFF);
  log(sys_error("reboot(RB_POWER_OFF) failed; still serving"));
}

void Server::send(MsgType type, const std::string& payload) {
  Status s = channel_.send(type, payload);
  if (!s.is_ok()) log("cannot send ", proto::type_name(type), ": ", s.message());
}

void Server::reply(const Status& status) {
  reply_owed_ = false;
  if (status.is_ok()) {
    send(MsgType::ok);
    return;
  }
  poisoned_ = true;
  log("request failed: ", status.message());
  send(MsgType::error, proto::encode(proto::ErrorReply{bounded(status.message())}));
}

Status Server::agree(const std::string& payload) {
  agreed_.reset();
  const std::string ours = cat("this agent (kiln-agent ", KILN_VERSION, ") speaks protocol ",
                               proto::version_range(proto::kMinProtocolVersion, proto::kProtocolVersion),
                               " with features 0x", hex(proto::kFeatures));
  auto ack = proto::decode_hello_ack(payload);
  if (!ack)
    return Status::fail(cat("kiln sent a hello_ack without a protocol choice (as kiln did before protocol 2); ", ours,
                            "; use kiln and kiln-agent from the same build"));
  if (ack->protocol_version < proto::kMinProtocolVersion || ack->protocol_version > proto::kProtocolVersion ||
      (ack->features & ~proto::kFeatures) != 0)
    return Status::fail(cat("kiln asked for protocol ", ack->protocol_version, " with features 0x", hex(ack->features),
                            "; ", ours, "; use kiln and kiln-agent from the same build"));
  agreed_ = *ack;
  return Status::ok();
}

void Server::announce() {
  proto::Hello ours;
  ours.agent_version = KILN_VERSION;
  const std::string hello = proto::encode(ours);
  log("version ", KILN_VERSION, " ready, announcing itself to the host");
  for (;;) {
    send(MsgType::hello, hello);
    const Deadline deadline = deadline_after(std::chrono::milliseconds(200));
    for (int left = 200; left > 0; left = poll_timeout_ms(deadline)) {
      pollfd pfd{channel_.fd(), POLLIN, 0};
      if (::poll(&pfd, 1, left) > 0) channel_.read_available();
      if (channel_.hung_up()) ::usleep(static_cast<useconds_t>(left) * 1000);
      while (auto frame = channel_.pop()) {
        if (frame->type == MsgType::hello_ack) {
          (void)channel_.take_garbage_seen();  // whatever came before the ack does not count
          Status agreed = agree(frame->payload);
          if (agreed.is_ok()) {
            send(MsgType::ok);
            return;
          }
          // Not served: the host reports this and gives up; keep announcing meanwhile.
          log("cannot agree with the host: ", agreed.message());
          send(MsgType::error, proto::encode(proto::ErrorReply{bounded(agreed.message())}));
          continue;
        }
        log("ignoring a ", proto::type_name(frame->type), " frame that came before hello_ack");
      }
    }
  }
}

void Server::serve() {
  for (;;) {
    try {
      if (channel_.take_garbage_seen()) poisoned_ = true;  // a request may have been lost in it
      std::optional<proto::Frame> frame = channel_.pop();
      if (!frame) {
        wait_for_input();
        continue;
      }
      handle(*frame);
    } catch (const std::exception& e) {
      log("internal error: ", e.what());
      put_.reset();
      if (reply_owed_) reply(Status::fail(cat("kiln-agent internal error: ", e.what())));
    } catch (...) {
      log("internal error (unknown exception)");
      put_.reset();
      if (reply_owed_) reply(Status::fail("kiln-agent internal error"));
    }
  }
}

void Server::wait_for_input() {
  pollfd fds[2] = {{reaper_.fd(), POLLIN, 0}, {channel_.fd(), POLLIN, 0}};
  // A hung-up tty is always "readable"; back off instead of spinning on it.
  const bool watch_channel = !channel_.hung_up();
  if (::poll(fds, watch_channel ? 2 : 1, watch_channel ? -1 : 100) < 0 && errno != EINTR) {
    log(sys_error("poll"));
    ::usleep(10'000);
    return;
  }
  if (fds[0].revents != 0) (void)reaper_.reap();  // orphans re-parented to PID 1
  if (!watch_channel || fds[1].revents != 0) channel_.read_available();
}

void Server::handle(proto::Frame& frame) {
  // The size of the next terminal: the host sends it before a terminal exec.
  if (frame.type == MsgType::resize) {
    if (std::optional<proto::WindowSize> size = proto::decode_window_size(frame.payload)) window_ = *size;
    else log("dropping a malformed resize frame");
    return;
  }
  // Input for a command that has ended (it exited before reading it all): no request,
  // no reply, and nothing wrong with the run.
  if (proto::is_stream_message(frame.type)) return;
  // A put ends with its last byte; any other frame before that cuts it short.
  if (put_ && frame.type != MsgType::file_data) finish_put(put_->interrupt(proto::type_name(frame.type)));

  switch (frame.type) {
    case MsgType::file_data:
      on_file_data(frame.payload);
      return;
    case MsgType::poweroff:
      power_off();
      return;
    default:
      break;
  }
  reply_owed_ = true;
  switch (frame.type) {
    case MsgType::hello_ack:
      reply(agree(frame.payload));  // after a restore: the restoring kiln states its choice again
      break;
    case MsgType::sync:
      on_sync(frame.payload);
      break;
    case MsgType::put_file:
      on_put_file(frame.payload);
      break;
    case MsgType::symlink: {
      auto req = proto::decode_symlink(frame.payload);
      reply(req ? make_symlink(*req) : Status::fail("malformed symlink request"));
      break;
    }
    case MsgType::mkdir: {
      auto req = proto::decode_mkdir(frame.payload);
      reply(req ? make_directory(*req) : Status::fail("malformed mkdir request"));
      break;
    }
    case MsgType::exec:
      on_exec(frame.payload);
      break;
    case MsgType::share:
      on_share(frame.payload);
      break;
    case MsgType::collect:
      on_collect(frame.payload);
      break;
    default:
      reply(Status::fail(cat("unexpected ", proto::type_name(frame.type), " frame (type ",
                             static_cast<int>(frame.type), ") from the host")));
      break;
  }
}

void Server::on_sync(const std::string& payload) {
  auto req = proto::decode_sync(payload);
  if (!req) return reply(Status::fail("malformed sync request"));
  poisoned_ = false;  // a new run starts here
  reply(apply_sync(*req));
}

void Server::on_collect(const std::string& payload) {
  auto req = proto::decode_collect(payload);
  if (!req) return reply(Status::fail("malformed collect request"));
  if (!agreed_ || (agreed_->features & proto::feature::outputs) == 0)
    return reply(Status::fail("not collected: outputs were not agreed in hello_ack"));
  proto::Collected sent;
  Status s = write_outputs(
      *req, [this](std::string_view chunk) { return channel_.send(MsgType::output_data, chunk); }, &sent);
  if (!s.is_ok()) return reply(s);
  // The reply is the collected frame at the end of the stream.
  reply_owed_ = false;
  send(MsgType::collected, proto::encode(sent));
}

void Server::on_put_file(const std::string& payload) {
  auto req = proto::decode_put_file(payload);
  // Its FILE_DATA frames will then arrive with no put in progress and be dropped.
  if (!req) return reply(Status::fail("malformed put_file request (bad path, mode or size)"));
  put_.emplace(*req);
  if (put_->done()) finish_put(put_->finish());  // size 0: no FILE_DATA follows
}

void Server::on_file_data(const std::string& payload) {
  if (!put_) {
    // Not a request of its own: answering it would shift every later reply.
    log("dropping a file_data frame with no put_file in progress");
    poisoned_ = true;
    return;
  }
  put_->feed(payload);
  if (put_->done()) finish_put(put_->finish());
}

void Server::finish_put(Status status) {
  put_.reset();
  reply(status);
}

void Server::on_exec(const std::string& payload) {
  auto req = proto::decode_exec(payload);
  if (!req) return reply(Status::fail("malformed exec request"));
  if (poisoned_) return reply(Status::fail("not run: an earlier request failed"));
  if (!agreed_) return reply(Status::fail("not run: no protocol version was agreed (hello_ack missing or refused)"));
  if (req->stdin_mode == proto::StdinMode::stream && (agreed_->features & proto::feature::stdin_stream) == 0)
    return reply(Status::fail("not run: stdin streaming was not agreed in hello_ack"));
  if (!req->user.empty() && (agreed_->features & proto::feature::exec_user) == 0)
    return reply(Status::fail("not run: exec as another user was not agreed in hello_ack"));
  if (req->stdin_mode == proto::StdinMode::terminal && (agreed_->features & proto::feature::terminal) == 0)
    return reply(Status::fail("not run: a terminal was not agreed in hello_ack"));
  ExecResult r = run_exec(channel_, reaper_, *req, window_);
  switch (r.kind) {
    case ExecResult::Kind::exited:
      reply_owed_ = false;
      // The host collects gcov counters only when there are some (feature::outputs).
      if ((agreed_->features & proto::feature::outputs) != 0)
        r.exit.coverage = directory_has_entries(proto::kGuestCoverageDir);
      send(MsgType::exit, proto::encode(r.exit));
      break;
    case ExecResult::Kind::exec_failed:
      reply_owed_ = false;
      r.failed.message = bounded(r.failed.message);
      send(MsgType::exec_failed, proto::encode(r.failed));
      break;
    case ExecResult::Kind::not_run:
      reply(Status::fail(r.error));
      break;
    case ExecResult::Kind::poweroff:
      reply_owed_ = false;
      power_off();
      break;
    case ExecResult::Kind::detached:
      reply_owed_ = false;
      for (UniqueFd& fd : r.held) detached_stdio_.push_back(std::move(fd));
      log("detached from the command (pid ", r.detached.pid, "); it runs on");
      send(MsgType::detached, proto::encode(r.detached));
      break;
  }
}

void Server::on_share(const std::string& payload) {
  auto req = proto::decode_share(payload);
  if (!req)
    return reply(Status::fail(cat("malformed share request (1 to ", proto::kMaxShareRoots,
                                  " absolute paths without '.', '..', '//' or NUL)")));
  if (!agreed_ || (agreed_->features & proto::feature::shares) == 0)
    return reply(Status::fail("not shared: the shares feature was not agreed in hello_ack"));
  // Mounts cannot be taken back cleanly while the relay serves them: one share per VM.
  if (share_requested_) return reply(Status::fail("not shared: this VM already had a share request"));
  share_requested_ = true;
  reply(mount_shares(*req));
}

}  // namespace kiln::agent
