#include "runner/agent_client.h"

#include "common/log.h"
#include "runner/guest_text.h"
#include "runner/interrupt.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cerrno>
#include <cstring>

namespace kiln::runner {

using proto::MsgType;

AgentClient::AgentClient(int fd, std::function<std::optional<std::string>()> vm_dead)
    : fd_(fd), vm_dead_(std::move(vm_dead)) {}

void AgentClient::send(MsgType type, std::string_view payload) {
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  }
  out_ += proto::encode_frame(type, payload);
}

Result<void> AgentClient::send_file_data(int fd, uint64_t size,
                                         const std::function<void(std::string_view)>& on_chunk) {
  // Chunks well under the frame cap; the guest copies each into the file as it arrives.
  constexpr size_t kChunk = 256 * 1024;
  std::string buf(kChunk, '\0');
  uint64_t sent = 0;
  while (sent < size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - sent));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(sent));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error("file changed or unreadable while sending it: {}", n < 0 ? std::strerror(errno) : "shrank");
    const std::string_view chunk(buf.data(), static_cast<size_t>(n));
    if (on_chunk) on_chunk(chunk);
    send(MsgType::file_data, chunk);
    sent += static_cast<uint64_t>(n);
    // Keep the queue bounded: push what we have before buffering more.
    if (out_.size() - out_pos_ > 4 * kChunk) KILN_TRY(flush(Clock::now() + std::chrono::seconds(60)));
  }
  return {};
}

Result<void> AgentClient::flush(Deadline deadline) { return pump(deadline, false); }

Result<proto::Frame> AgentClient::next_frame(Deadline deadline) {
  KILN_ASSIGN_OR_RETURN(auto f, next_frame_or_input(deadline, {-1, -1}));
  if (!f) return make_error("internal: no frame after pump");
  return std::move(*f);
}

Result<std::optional<proto::Frame>> AgentClient::next_frame_or_input(Deadline deadline, InputFds inputs) {
  bool input_ready = false;
  KILN_TRY(pump(deadline, true, inputs, &input_ready));
  if (input_ready && !decoder_.has_frame()) return std::optional<proto::Frame>();
  auto f = decoder_.next();
  if (!f) return make_error("internal: no frame after pump");
  if (!proto::is_guest_message(f->type))
    return make_error("the guest agent sent a frame of unknown type {}; the guest is misbehaving",
                      static_cast<int>(f->type));
  return std::optional<proto::Frame>(std::move(*f));
}

Result<void> AgentClient::pump(Deadline deadline, bool want_frame, InputFds inputs, bool* input_ready) {
  char buf[65536];
  for (;;) {
    bool pending_out = out_pos_ < out_.size();
    // A decoded frame is handed over at once, even while requests are still going out:
    // the caller keeps pumping until it has its reply, and that flushes them. Reading no
    // further meanwhile bounds what a guest can make us buffer.
    if (want_frame ? decoder_.has_frame() : !pending_out) return {};
    if (int sig = interrupt::received())
      return Error{fmt::format("interrupted by signal {} ({})", sig, strsignal(sig)), ErrorKind::interrupted};
    auto now = Clock::now();
    if (now >= deadline) return Error{"timed out waiting for the guest agent", ErrorKind::timeout};
    auto slice = std::min<int64_t>(100, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
    // While only flushing, stop reading once a frame waits: a chatty guest cannot grow our buffer.
    bool want_input = want_frame || decoder_.buffered() < 2 * proto::kMaxPayload;
    // poll() skips negative descriptors: an unused input slot costs nothing.
    pollfd fds[4] = {{fd_, static_cast<short>((want_input ? POLLIN : 0) | (pending_out ? POLLOUT : 0)), 0},
                     {interrupt::fd(), POLLIN, 0},
                     {inputs[0], POLLIN, 0},
                     {inputs[1], POLLIN, 0}};
    int r = ::poll(fds, 4, static_cast<int>(slice));
    if (r < 0 && errno != EINTR) return make_error("poll on the agent channel: {}", std::strerror(errno));
    if (r <= 0) {
      if (auto dead = vm_dead_()) return make_error("the VM stopped: {}", *dead);
      continue;
    }
    if (input_ready != nullptr && (fds[2].revents != 0 || fds[3].revents != 0)) *input_ready = true;
    if (fds[0].revents & POLLOUT) {
      ssize_t n = ::write(fd_, out_.data() + out_pos_, out_.size() - out_pos_);
      if (n > 0) out_pos_ += static_cast<size_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR)
        return make_error("writing to the guest agent failed: {}", std::strerror(errno));
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n == 0) {
        // The channel closes first when the guest goes down (power-off, a panic's
        // reboot): give the VMM a moment to end, so the error can say why.
        for (int waited_ms = 0; waited_ms < 2000; waited_ms += 20) {
          if (auto dead = vm_dead_()) return make_error("the VM stopped: {}", *dead);
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return make_error("the guest agent closed its channel");
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        return make_error("reading from the guest agent failed: {}", std::strerror(errno));
      if (n > 0 && !decoder_.feed(buf, static_cast<size_t>(n)))
        return make_error("garbage on the agent channel: {}", decoder_.error());
    }
    if (input_ready != nullptr && *input_ready) return {};
  }
}

Result<void> AgentClient::expect_ok(Deadline deadline, const std::string& what) {
  KILN_ASSIGN_OR_RETURN(auto f, next_frame(deadline));
  if (f.type == MsgType::ok) return {};
  if (f.type == MsgType::error) {
    auto e = proto::decode_error(f.payload);
    return make_error("{}: the guest agent says: {}", what,
                      e ? escape_guest_text(e->message) : "(malformed error frame)");
  }
  return make_error("{}: unexpected {} frame from the guest agent", what, proto::type_name(f.type));
}

Result<proto::Hello> AgentClient::handshake(Deadline deadline) {
  std::optional<proto::Hello> hello;
  // The agent re-announces until acknowledged; duplicates that cross our ack are skipped.
  for (;;) {
    KILN_ASSIGN_OR_RETURN(auto f, next_frame(deadline));
    if (f.type == MsgType::hello) {
      if (hello) continue;
      auto h = proto::decode_hello(f.payload);
      if (!h) return make_error("malformed hello from the guest agent");
      h->agent_version = escape_guest_text(h->agent_version);
      auto version = proto::common_version(h->min_protocol_version, h->protocol_version);
      if (!version)
        return make_error(
            "the guest agent (kiln-agent {}) speaks agent protocol {}, this kiln speaks {}: they come from "
            "different kiln builds; use the kiln-agent built with this kiln (KILN_AGENT, or beside the kiln binary)",
            h->agent_version, proto::version_range(h->min_protocol_version, h->protocol_version),
            proto::version_range(proto::kMinProtocolVersion, proto::kProtocolVersion));
      features_ = h->features & proto::kFeatures;
      send(MsgType::hello_ack, proto::encode(proto::HelloAck{*version, *features_}));
      hello = std::move(h);
      continue;
    }
    if (f.type == MsgType::ok && hello) {
      KILN_TRY(flush(deadline));  // nothing left by then in a real exchange: the ok answers our ack
      return *hello;
    }
    if (f.type == MsgType::error && hello) {
      auto e = proto::decode_error(f.payload);
      return make_error("the guest agent (kiln-agent {}) refused this kiln's protocol choice: {}", hello->agent_version,
                        e ? escape_guest_text(e->message) : "(malformed error frame)");
    }
    return make_error("unexpected {} frame while waiting for the guest agent's hello", proto::type_name(f.type));
  }
}

void AgentClient::restate_agreement() {
  features_ = proto::kFeatures;
  send(MsgType::hello_ack, proto::encode(proto::HelloAck{proto::kProtocolVersion, proto::kFeatures}));
}

Result<void> AgentClient::queue_share(const std::vector<std::string>& roots) {
  if (!features_) return make_error("internal: a share request before any protocol agreement with the guest agent");
  if ((*features_ & proto::feature::shares) == 0)
    return make_error("cannot share host trees with this guest: its agent does not offer tree shares (a kiln-agent "
                      "from before them); use the kiln-agent built with this kiln");
  if (roots.empty() || roots.size() > proto::kMaxShareRoots)
    return make_error("cannot share {} host trees: a share takes 1 to {}", roots.size(), proto::kMaxShareRoots);
  for (const std::string& root : roots)
    if (!proto::is_safe_guest_path(root))
      return make_error("cannot share {:?}: a share root must be an absolute path of at most 4096 bytes without "
                        "'.', '..' or empty components",
                        root);
  send(MsgType::share, proto::encode(proto::Share{roots}));
  return {};
}

Result<void> AgentClient::share(const std::vector<std::string>& roots, Deadline deadline) {
  KILN_TRY(queue_share(roots));
  return expect_ok(deadline, "sharing the host's trees with the guest");
}

}  // namespace kiln::runner
