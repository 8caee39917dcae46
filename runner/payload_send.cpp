#include "runner/payload_send.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::runner {

using proto::MsgType;

Result<size_t> queue_payload(AgentClient& agent, const Payload& payload) {
  size_t requests = 0;
  for (const auto& e : payload.entries()) {
    switch (e.kind) {
      case PayloadEntry::Kind::directory:
        agent.send(MsgType::mkdir, proto::encode(proto::Mkdir{e.path, e.mode}));
        break;
      case PayloadEntry::Kind::symlink:
        agent.send(MsgType::symlink, proto::encode(proto::Symlink{e.path, e.symlink_target}));
        break;
      case PayloadEntry::Kind::file: {
        int fd = ::open(e.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return make_error("cannot open {} to send it to the guest: {}", e.path, std::strerror(errno));
        agent.send(MsgType::put_file, proto::encode(proto::PutFile{e.path, e.mode, e.size}));
        auto sent = agent.send_file_data(fd, e.size);
        ::close(fd);
        if (!sent) return with_context("sending " + e.path, sent.error());
        break;
      }
    }
    ++requests;
  }
  return requests;
}

}  // namespace kiln::runner
