// Fuzzes the share relay's reply reassembly (agent/fuse_replies.h): arbitrary port
// bytes, cut into pieces, must yield only whole replies within the bounds, and the
// assembler must never hold more than one reply plus one piece.
#include "agent/fuse_replies.h"
#include "agent/protocol.h"

#include <linux/fuse.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

using namespace kiln;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the piece size, as a port cuts the stream where it likes.
  const size_t piece = 1 + data[0] * 97u;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  agent::FuseReplyAssembler a;
  while (!rest.empty()) {
    std::string_view chunk = rest.substr(0, piece);
    rest.remove_prefix(chunk.size());
    const bool good = a.feed(chunk);
    while (auto reply = a.next()) {
      uint32_t len = 0;
      std::memcpy(&len, reply->data(), sizeof len);
      if (reply->size() < sizeof(fuse_out_header) || reply->size() > proto::kMaxShareMessage || len != reply->size())
        std::abort();
    }
    if (a.buffered() > proto::kMaxShareMessage + chunk.size()) std::abort();
    if (!good || a.failed()) break;
  }
  return 0;
}
