#include "runner/payload_send.h"

#include "common/digest.h"
#include "common/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::runner {

using proto::MsgType;

namespace {

// Send one file after its put_file header. If a payload layer was keyed by the file's
// digest, the bytes sent must be those bytes: a file rewritten between digest and send
// would give a layer keyed by old content that holds new content, restored forever.
Result<void> send_file(AgentClient& agent, const PayloadEntry& e, const std::string& guest_path,
                       const std::string& keyed_digest) {
  UniqueFd fd(::open(e.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error("cannot open {} to send it to the guest: {}", e.path, std::strerror(errno));
  agent.send(MsgType::put_file, proto::encode(proto::PutFile{guest_path, e.mode, e.size}));
  DigestStream sent;
  auto streamed = agent.send_file_data(fd.get(), e.size, [&sent](std::string_view chunk) { sent.update(chunk); });
  if (!streamed) return with_context("sending " + e.path, streamed.error());
  if (!keyed_digest.empty() && sent.hex() != keyed_digest)
    return make_error("{} changed while kiln was sending it to the guest; rerun (the payload layer is keyed by the "
                      "content kiln read first, so nothing was saved)",
                      e.path);
  return {};
}

}  // namespace

Result<size_t> queue_payload(AgentClient& agent, const Payload& payload) {
  size_t requests = 0;
  for (size_t i = 0; i < payload.entries().size(); ++i) {
    const auto& e = payload.entries()[i];
    switch (e.kind) {
      case PayloadEntry::Kind::directory:
        agent.send(MsgType::mkdir, proto::encode(proto::Mkdir{payload.guest_path(e), e.mode}));
        break;
      case PayloadEntry::Kind::symlink:
        agent.send(MsgType::symlink, proto::encode(proto::Symlink{payload.guest_path(e), payload.guest_symlink_target(e)}));
        break;
      case PayloadEntry::Kind::file:
        KILN_TRY(send_file(agent, e, payload.guest_path(e), payload.keyed_file_digest(i)));
        break;
    }
    ++requests;
  }
  return requests;
}

}  // namespace kiln::runner
