#include "vmm/qemu/qmp_client.h"

#include "vmm/qemu/unix_socket.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kiln::vmm::qemu {
namespace {

using nlohmann::json;

// For messages about qemu's replies: never throws, even on invalid UTF-8 from qemu.
std::string show(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 500) s = s.substr(0, 500) + "...";
  return s;
}

Error timeout_error(const std::string& what) {
  Error e = make_error("qemu did not answer {} in time (QMP deadline passed)", what);
  e.kind = ErrorKind::timeout;
  return e;
}

}  // namespace

std::string qmp_string(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<QmpClient> QmpClient::connect(const std::filesystem::path& socket, Deadline deadline,
                                     const std::function<bool()>& peer_alive) {
  KILN_ASSIGN_OR_RETURN(UniqueFd fd, connect_unix(socket, deadline, peer_alive));
  return handshake(std::move(fd), deadline);
}

QmpClient::Detached QmpClient::detach() && {
  return Detached{std::move(fd_), std::move(buffer_), next_id_};
}

QmpClient QmpClient::attach(Detached detached) {
  QmpClient client(std::move(detached.fd));
  client.buffer_ = std::move(detached.pending);
  client.next_id_ = detached.next_id;
  return client;
}

Result<QmpClient> QmpClient::handshake(UniqueFd fd, Deadline deadline) {
  QmpClient client(std::move(fd));
  KILN_ASSIGN_OR_RETURN(json greeting, client.read_message(deadline, "the QMP greeting"));
  if (!greeting.contains("QMP"))
    return make_error("expected a QMP greeting from qemu, got {}: is this a QMP socket?", show(greeting));
  client.greeting_ = std::move(greeting);
  KILN_TRY(client.execute("qmp_capabilities", deadline));
  return client;
}

Result<json> QmpClient::execute(const std::string& command, const json& arguments, Deadline deadline) {
  return execute_with_fd(command, arguments, -1, deadline);
}

Result<json> QmpClient::execute_with_fd(const std::string& command, const json& arguments, int fd,
                                        Deadline deadline) {
  const uint64_t id = next_id_++;
  json request = {{"execute", command}, {"id", id}};
  if (!arguments.empty()) request["arguments"] = arguments;
  const std::string what = "'" + command + "'";
  KILN_TRY(send(request.dump() + "\n", fd, deadline, what));
  for (;;) {
    KILN_ASSIGN_OR_RETURN(json msg, read_message(deadline, what));
    if (msg.contains("event")) {
      queue_event(std::move(msg));
      continue;
    }
    // A reply to an earlier command that timed out: not ours, skip it.
    auto it = msg.find("id");
    if (it == msg.end() || !it->is_number_unsigned() || it->get<uint64_t>() != id) continue;
    if (auto ret = msg.find("return"); ret != msg.end()) return std::move(*ret);
    if (auto err = msg.find("error"); err != msg.end() && err->is_object()) {
      std::string desc = qmp_string(*err, "desc");
      std::string cls = qmp_string(*err, "class");
      if (desc.empty()) desc = show(*err);
      return make_error("qemu refused {}: {}{}", what, desc, cls.empty() ? "" : " (" + cls + ")");
    }
    return make_error("qemu sent an unexpected reply to {}: {}", what, show(msg));
  }
}

Result<json> QmpClient::wait_event(const std::string& name, Deadline deadline) {
  for (;;) {
    for (auto it = events_.begin(); it != events_.end(); ++it) {
      if (qmp_string(*it, "event") == name) {
        json event = std::move(*it);
        events_.erase(it);
        return event;
      }
    }
    KILN_ASSIGN_OR_RETURN(json msg, read_message(deadline, "event " + name));
    // Replies outside execute() belong to commands that already timed out.
    if (msg.contains("event")) queue_event(std::move(msg));
  }
}

void QmpClient::queue_event(json event) {
  if (events_.size() >= kMaxQueuedEvents) events_.pop_front();
  events_.push_back(std::move(event));
}

Result<void> QmpClient::send(const std::string& line, int pass_fd, Deadline deadline, const std::string& what) {
  size_t off = 0;
  while (off < line.size()) {
    pollfd pfd{fd_.get(), POLLOUT, 0};
    int r = ::poll(&pfd, 1, poll_timeout_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return make_error("poll on the QMP socket failed: {}", std::strerror(errno));
    if (r == 0) return timeout_error(what);

    iovec iov{const_cast<char*>(line.data() + off), line.size() - off};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    // The fd rides with the first byte of the command: qemu attaches it to that message.
    if (pass_fd >= 0 && off == 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int));
      // SAFETY: CMSG_DATA points into `control`, sized by CMSG_SPACE(sizeof(int)) above.
      std::memcpy(CMSG_DATA(cmsg), &pass_fd, sizeof(int));
    }
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return make_error("cannot send {} to qemu over QMP: {} (did qemu exit?)", what, std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return {};
}

Result<json> QmpClient::read_message(Deadline deadline, const std::string& what) {
  for (;;) {
    size_t nl = buffer_.find('\n', scanned_);
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      scanned_ = 0;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json msg = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (msg.is_discarded() || !msg.is_object()) {
        if (line.size() > 200) line = line.substr(0, 200) + "...";
        return make_error("qemu sent something that is not a QMP message while waiting for {}: '{}'", what, line);
      }
      return msg;
    }
    scanned_ = buffer_.size();
    if (buffer_.size() >= kMaxMessageBytes)
      return make_error("qemu sent a QMP message longer than {} bytes while waiting for {}: refusing it as garbage",
                        kMaxMessageBytes, what);

    pollfd pfd{fd_.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, poll_timeout_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return make_error("poll on the QMP socket failed: {}", std::strerror(errno));
    if (r == 0) return timeout_error(what);
    char chunk[16384];
    size_t room = std::min(sizeof chunk, kMaxMessageBytes - buffer_.size());
    ssize_t n = ::recv(fd_.get(), chunk, room, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return make_error("cannot read from the QMP socket while waiting for {}: {}", what, std::strerror(errno));
    }
    if (n == 0) return make_error("qemu closed the QMP connection while kiln waited for {} (it probably exited)", what);
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace kiln::vmm::qemu
