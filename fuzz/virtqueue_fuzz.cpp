// Fuzzes the virtio device side against a hostile guest. The input becomes guest RAM
// (rings, descriptors, buffers) plus either a queue configuration or a sequence of
// virtio-mmio register accesses. Must never crash, hang, or touch memory outside the
// guest RAM region (ASan guards the host allocations around it). Input layout:
//   byte 0   mode: bit 0 = 0 queue mode, 1 transport mode; bit 1 console instead of
//            blk (transport mode); bit 2 indirect descriptors allowed (queue mode)
//   queue mode:     byte 1 queue size 1 << (b % 9); bytes 2..7 desc/avail/used (u16 each)
//   transport mode: byte 1 op count n; n x 7-byte ops { u16 offset, u8 kind, u32 value }
//                   kind bits 0-1 access size 1/2/4/8, bit 2 read, bit 3 host-side event,
//                   bit 4 (with bit 3) the host end hangs up first
//   rest     copied to guest RAM at address 0 (the RAM is 64 KiB, zero elsewhere)
#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/virtio/virtio_blk.h"
#include "vmm/kvm/virtio/virtio_console.h"
#include "vmm/kvm/virtio/virtio_mmio.h"
#include "vmm/kvm/virtio/virtqueue.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

using namespace kiln::vmm::kvm;

namespace {

constexpr uint64_t kRam = 64 * 1024;
constexpr size_t kQueueHeader = 8;
constexpr size_t kOpBytes = 7;

class NullIrq final : public IrqLine {
 public:
  uint32_t gsi() const override { return 5; }
  void pulse() override {}
  void set_level(bool) override {}
};

GuestMemory& ram() {
  static GuestMemory mem = [] {
    auto m = GuestMemory::anonymous(kRam);
    if (!m) std::abort();
    return std::move(m).value();
  }();
  return mem;
}

void load_ram(const uint8_t* data, size_t size) {
  GuestMemory& mem = ram();
  std::memset(mem.host_base(), 0, kRam);
  std::memcpy(mem.host_base(), data, std::min<size_t>(size, kRam));
}

uint16_t u16_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void fuzz_queue(const uint8_t* data, size_t size) {
  if (size < kQueueHeader) return;
  load_ram(data + kQueueHeader, size - kQueueHeader);
  Virtqueue q(ram(), 256, "fuzz queue", 32 * 1024);
  q.set_indirect_allowed((data[0] & 4) != 0);
  VirtqueueState& s = q.state();
  s.size = static_cast<uint16_t>(1u << (data[1] % 9));
  s.desc_gpa = u16_at(data + 2);
  s.avail_gpa = u16_at(data + 4);
  s.used_gpa = u16_at(data + 6);
  if (!q.enable()) return;
  // Bounded: at most two passes over the ring.
  for (int i = 0; i < 512; ++i) {
    std::optional<DescriptorChain> chain = q.pop();
    if (!chain) break;
    uint8_t scratch[256];
    (void)read_from_chain(ram(), *chain, chain->readable_bytes / 2, scratch);
    (void)write_to_chain(ram(), *chain, 0, {scratch, sizeof scratch});
    if (i % 7 == 3) {
      q.undo_pop();
      continue;
    }
    q.push_used(chain->head, static_cast<uint32_t>(chain->writable_bytes));
    (void)q.take_interrupt();
  }
}

int blk_image() {
  static int fd = [] {
    int f = ::memfd_create("virtqueue-fuzz-disk", 0);
    if (f < 0 || ::ftruncate(f, 32 * 512) != 0) std::abort();
    return f;
  }();
  return fd;
}

void fuzz_transport(const uint8_t* data, size_t size) {
  if (size < 2) return;
  const bool console = (data[0] & 2) != 0;
  const size_t ops = std::min<size_t>(data[1], (size - 2) / kOpBytes);
  const uint8_t* op = data + 2;
  const size_t header = 2 + ops * kOpBytes;
  load_ram(data + header, size - header);

  NullIrq irq;
  int peer = -1;
  VirtioConsole* con = nullptr;
  std::unique_ptr<VirtioDevice> device;
  if (console) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
    peer = fds[1];
    auto c = std::make_unique<VirtioConsole>(kiln::UniqueFd(fds[0]));
    // Lost output is reported once, whatever the guest does afterwards.
    c->set_on_failure([reported = 0](const std::string&) mutable {
      if (++reported > 1) std::abort();
    });
    con = c.get();
    device = std::move(c);
  } else {
    auto b = VirtioBlk::create(kiln::UniqueFd(::dup(blk_image())), false);
    if (!b) std::abort();
    device = std::move(b).value();
  }
  VirtioMmio mmio(ram(), irq, std::move(device));
  for (size_t i = 0; i < ops; ++i, op += kOpBytes) {
    const uint64_t offset = u16_at(op) & 0x1ff;
    const uint8_t kind = op[2];
    uint8_t bytes[8] = {};
    std::memcpy(bytes, op + 3, 4);
    const size_t len = size_t{1} << (kind & 3);
    if ((kind & 8) != 0 && con != nullptr) {
      char buf[4096];
      if ((kind & 16) != 0) ::shutdown(peer, SHUT_RDWR);
      if ((kind & 4) != 0) {
        while (::read(peer, buf, sizeof buf) > 0) {}
        con->on_host_writable();
      } else {
        (void)::send(peer, op + 3, 4, MSG_NOSIGNAL);  // no SIGPIPE once the peer hung up
        con->on_host_readable();
      }
      (void)con->io_interest();
    } else if ((kind & 4) != 0) {
      mmio.read(offset, {bytes, len});
    } else {
      mmio.write(offset, {bytes, len});
    }
  }
  // VIRTQUEUE_FUZZ_TRACE=1 shows how far an input got (to check that seeds reach DRIVER_OK).
  static const bool trace = std::getenv("VIRTQUEUE_FUZZ_TRACE") != nullptr;
  if (trace) {
    uint32_t isr = 0;
    mmio.read(0x60, {reinterpret_cast<uint8_t*>(&isr), 4});
    std::fprintf(stderr, "%s: status %#x interrupt status %#x\n", mmio.name().c_str(), mmio.status(), isr);
  }
  if (peer >= 0) ::close(peer);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if ((data[0] & 1) == 0) {
    fuzz_queue(data, size);
  } else {
    fuzz_transport(data, size);
  }
  return 0;
}
