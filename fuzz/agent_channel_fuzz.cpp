// Fuzzes the host side of the agent channel: arbitrary guest bytes through the
// frame decoder and every guest-message decoder. Must never crash, hang or
// allocate without bound.
#include "agent/protocol.h"

#include <cstddef>
#include <cstdint>

using namespace kiln::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FrameDecoder decoder;
  // Feed in two uneven pieces to exercise reassembly.
  size_t split = size ? data[0] % (size + 1) : 0;
  const char* bytes = reinterpret_cast<const char*>(data);
  for (auto [p, n] : {std::pair{bytes, split}, std::pair{bytes + split, size - split}}) {
    if (!decoder.feed(p, n)) break;
    while (auto frame = decoder.next()) {
      switch (frame->type) {
        case MsgType::hello:
          if (auto h = decode_hello(frame->payload)) (void)common_version(h->min_protocol_version, h->protocol_version);
          break;
        case MsgType::error: (void)decode_error(frame->payload); break;
        case MsgType::exit: (void)decode_exit(frame->payload); break;
        case MsgType::exec_failed: (void)decode_exec_failed(frame->payload); break;
        case MsgType::stdin_credit: (void)decode_stdin_credit(frame->payload); break;
        case MsgType::collected: (void)decode_collected(frame->payload); break;
        case MsgType::detached: (void)decode_detached(frame->payload); break;
        // Host->guest decoders run in the agent; fuzz them here too.
        case MsgType::hello_ack: (void)decode_hello_ack(frame->payload); break;
        case MsgType::sync: (void)decode_sync(frame->payload); break;
        case MsgType::put_file: (void)decode_put_file(frame->payload); break;
        case MsgType::symlink: (void)decode_symlink(frame->payload); break;
        case MsgType::mkdir: (void)decode_mkdir(frame->payload); break;
        case MsgType::exec: (void)decode_exec(frame->payload); break;
        case MsgType::share: (void)decode_share(frame->payload); break;
        case MsgType::collect: (void)decode_collect(frame->payload); break;
        case MsgType::resize: (void)decode_window_size(frame->payload); break;
        default: break;
      }
    }
  }
  return 0;
}
