#include "vmm/kvm/virtio/virtio_console.h"

#include "vmm/kvm/state_stream.h"

#include <linux/virtio_console.h>
#include <linux/virtio_ids.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

namespace kiln::vmm::kvm {

namespace {

constexpr size_t kRxQueue = 0, kTxQueue = 1, kControlRxQueue = 2, kControlTxQueue = 3;
constexpr uint32_t kPortId = 0;

// One chain is one sendmsg: it has at most kMaxIndirectDescriptors (or queue-size) segments.
static_assert(Virtqueue::kMaxIndirectDescriptors <= IOV_MAX, "a chain's iovecs must fit one sendmsg");

// Write without blocking and without SIGPIPE (a plain writev on a socket whose peer is
// gone would kill the VMM). Falls back to writev for fds that are not sockets.
ssize_t send_iov(int fd, std::vector<iovec>& iov) {
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && errno == ENOTSOCK) n = ::writev(fd, iov.data(), static_cast<int>(iov.size()));
  return n;
}

// Why a send to the host end failed for good (n < 0: errno says; n == 0: no progress).
std::string send_failure(ssize_t n, uint64_t bytes) {
  return fmt::format("sending {} bytes of guest output to kiln: {}", bytes,
                     n < 0 ? std::strerror(errno) : "the socket took nothing");
}

}  // namespace

VirtioConsole::VirtioConsole(UniqueFd host_fd, std::function<void()> wake_io, std::string port_name)
    : fd_(std::move(host_fd)), wake_io_(std::move(wake_io)), port_name_(std::move(port_name)) {
  // PORT_NAME must fit one control message (kMaxControlMessage, also the load() bound).
  if (port_name_.size() > kMaxControlMessage - 16) port_name_.resize(kMaxControlMessage - 16);
}

uint32_t VirtioConsole::device_type() const { return VIRTIO_ID_CONSOLE; }
uint64_t VirtioConsole::features() const { return 1ull << VIRTIO_CONSOLE_F_MULTIPORT; }

uint64_t VirtioConsole::queue_max_chain_bytes(size_t q) const {
  return q == kControlRxQueue || q == kControlTxQueue ? 64 * 1024 : kMaxDataChainBytes;
}

void VirtioConsole::read_config(uint64_t offset, std::span<uint8_t> data) const {
  virtio_console_config config{};
  config.max_nr_ports = 1;
  const auto* bytes = reinterpret_cast<const uint8_t*>(&config);  // a packed POD: its bytes are the layout
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = offset + i < sizeof config ? bytes[offset + i] : 0;
}

void VirtioConsole::activate(VirtioTransport& transport, uint64_t driver_features) {
  transport_ = &transport;
  state_.multiport = (driver_features & (1ull << VIRTIO_CONSOLE_F_MULTIPORT)) != 0;
  // Without multiport, port 0 is a plain console that is always open.
  if (!state_.multiport) state_.guest_connected = true;
  // After a restore, control messages may be waiting for buffers the guest already posted.
  if (!state_.control_out.empty()) flush_control();
  wake_if_changed();
}

void VirtioConsole::reset() {
  transport_ = nullptr;
  state_ = VirtioConsoleState{};
}

VirtioConsole::IoInterest VirtioConsole::io_interest() const {
  std::lock_guard lock(mutex());
  polled_ = interest_locked();
  return polled_;
}

uint64_t VirtioConsole::lost_bytes() const {
  std::lock_guard lock(mutex());
  return lost_bytes_;
}

VirtioConsole::IoInterest VirtioConsole::interest_locked() const {
  IoInterest i;
  if (transport_ == nullptr) return i;
  i.writable = !state_.tx_pending.empty() && !output_failed_;
  i.readable = state_.guest_connected && !state_.host_eof && transport_->queue(kRxQueue).has_available();
  return i;
}

void VirtioConsole::wake_if_changed() {
  // Compared with what the I/O thread polls for, not with the interest before this
  // call: the guest fills the rings without our lock, so by the time its notify
  // arrives "before" may already include the buffers the poll set lacks.
  const IoInterest now = interest_locked();
  if (wake_io_ && (now.readable != polled_.readable || now.writable != polled_.writable)) wake_io_();
}

void VirtioConsole::on_host_readable() {
  std::lock_guard lock(mutex());
  pump_rx();
}

void VirtioConsole::on_host_writable() {
  std::lock_guard lock(mutex());
  pump_tx();
}

void VirtioConsole::queue_notify(size_t index) {
  if (transport_ == nullptr) return;
  switch (index) {
    case kRxQueue: pump_rx(); break;
    case kTxQueue: pump_tx(); break;
    case kControlRxQueue: flush_control(); break;
    case kControlTxQueue: handle_control_tx(); break;
    default: break;
  }
  wake_if_changed();
}

void VirtioConsole::send_control(uint16_t event, uint16_t value, std::string_view payload) {
  if (state_.control_out.size() >= kMaxControlBacklog) {
    log_.report("control backlog full; dropping event {}", event);
    return;
  }
  virtio_console_control c{};
  c.id = kPortId;
  c.event = event;
  c.value = value;
  std::string msg(reinterpret_cast<const char*>(&c), sizeof c);  // the wire layout is the struct's bytes
  msg.append(payload);
  state_.control_out.push_back(std::move(msg));
}

void VirtioConsole::handle_control_tx() {
  Virtqueue& q = transport_->queue(kControlTxQueue);
  while (std::optional<DescriptorChain> chain = q.pop()) {
    virtio_console_control c{};
    const size_t got = read_from_chain(transport_->memory(), *chain, 0,
                                       {reinterpret_cast<uint8_t*>(&c), sizeof c});  // POD filled bytewise
    q.push_used(chain->head, 0);
    if (got < sizeof c) {
      log_.report("control message of {} bytes (need {})", got, sizeof c);
      continue;
    }
    handle_control_message(c.id, c.event, c.value);
  }
  transport_->notify_used(kControlTxQueue);
  flush_control();
}

void VirtioConsole::handle_control_message(uint32_t id, uint16_t event, uint16_t value) {
  switch (event) {
    case VIRTIO_CONSOLE_DEVICE_READY:
      if (value != 1) {
        log_.report("driver reports it failed to set up (DEVICE_READY 0)");
        return;
      }
      state_.port_added = true;
      send_control(VIRTIO_CONSOLE_PORT_ADD, 1);
      return;
    case VIRTIO_CONSOLE_PORT_READY:
      if (id != kPortId || !state_.port_added) break;
      if (value != 1) {
        log_.report("driver failed to add port {}", id);
        return;
      }
      state_.port_ready = true;
      // Linux copies the name up to the buffer's end and terminates it; QEMU sends the NUL too.
      send_control(VIRTIO_CONSOLE_PORT_NAME, 1, std::string_view(port_name_.c_str(), port_name_.size() + 1));
      if (state_.host_connected) send_control(VIRTIO_CONSOLE_PORT_OPEN, 1);
      return;
    case VIRTIO_CONSOLE_PORT_OPEN:
      if (id != kPortId || !state_.port_ready) break;
      state_.guest_connected = value != 0;
      if (state_.guest_connected) pump_rx();
      return;
    default:
      break;
  }
  log_.report("unexpected control event {} for port {} (value {})", event, id, value);
}

void VirtioConsole::flush_control() {
  Virtqueue& q = transport_->queue(kControlRxQueue);
  while (!state_.control_out.empty()) {
    std::optional<DescriptorChain> chain = q.pop();
    if (!chain) break;  // the message waits for the driver's next control buffer
    const std::string& msg = state_.control_out.front();
    if (chain->writable_bytes < msg.size()) {
      log_.report("control buffer of {} bytes is too small for a {}-byte message", chain->writable_bytes, msg.size());
      q.push_used(chain->head, 0);
      continue;
    }
    write_to_chain(transport_->memory(), *chain, 0, {reinterpret_cast<const uint8_t*>(msg.data()), msg.size()});
    q.push_used(chain->head, static_cast<uint32_t>(msg.size()));
    state_.control_out.pop_front();
  }
  transport_->notify_used(kControlRxQueue);
}

void VirtioConsole::host_hung_up() {
  if (state_.host_eof) return;
  state_.host_eof = true;
  // Tell the guest: its reads then return 0 (end of file) instead of blocking forever.
  // Output already in the transmit queue still goes out while the host end takes it.
  if (state_.port_ready && state_.host_connected) send_control(VIRTIO_CONSOLE_PORT_OPEN, 0);
  state_.host_connected = false;
  if (transport_ != nullptr) flush_control();
}

void VirtioConsole::pump_rx() {
  if (transport_ == nullptr || !state_.guest_connected || state_.host_eof) return;
  Virtqueue& q = transport_->queue(kRxQueue);
  while (std::optional<DescriptorChain> chain = q.pop()) {
    std::vector<iovec> iov = chain_iovecs(transport_->memory(), chain->writable, 0, chain->writable_bytes);
    if (iov.empty()) {
      q.push_used(chain->head, 0);
      continue;
    }
    const ssize_t n = ::readv(fd_.get(), iov.data(), static_cast<int>(iov.size()));
    if (n > 0) {
      q.push_used(chain->head, static_cast<uint32_t>(n));
      continue;
    }
    q.undo_pop();  // nothing read: the buffer stays with the device for the next bytes
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
    host_hung_up();
    break;
  }
  transport_->notify_used(kRxQueue);
}

void VirtioConsole::output_lost(uint64_t bytes, const std::string& why) {
  lost_bytes_ += bytes;
  if (output_failed_) return;
  output_failed_ = true;
  if (on_failure_) on_failure_(why);
}

bool VirtioConsole::flush_tx_pending() {
  while (!state_.tx_pending.empty() && !output_failed_) {
    std::vector<iovec> iov{{state_.tx_pending.data(), state_.tx_pending.size()}};
    const ssize_t n = send_iov(fd_.get(), iov);
    if (n > 0) {
      state_.tx_pending.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    output_lost(state_.tx_pending.size(), send_failure(n, state_.tx_pending.size()));
    state_.tx_pending.clear();
  }
  return true;
}

bool VirtioConsole::transmit(const DescriptorChain& chain) {
  if (output_failed_) {
    lost_bytes_ += chain.readable_bytes;  // already reported: the run is ending
    return true;
  }
  std::vector<iovec> iov = chain_iovecs(transport_->memory(), chain.readable, 0, chain.readable_bytes);
  const ssize_t n = iov.empty() ? 0 : send_iov(fd_.get(), iov);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    output_lost(chain.readable_bytes, send_failure(n, chain.readable_bytes));
    return true;
  }
  const uint64_t sent = n > 0 ? static_cast<uint64_t>(n) : 0;
  if (sent == chain.readable_bytes) return true;
  // Keep the rest (bounded by the chain cap) until the fd drains.
  state_.tx_pending.resize(chain.readable_bytes - sent);
  read_from_chain(transport_->memory(), chain, sent,
                  {reinterpret_cast<uint8_t*>(state_.tx_pending.data()), state_.tx_pending.size()});
  return false;
}

void VirtioConsole::pump_tx() {
  if (transport_ == nullptr) return;
  if (!flush_tx_pending()) return;
  Virtqueue& q = transport_->queue(kTxQueue);
  while (std::optional<DescriptorChain> chain = q.pop()) {
    const bool all_sent = transmit(*chain);
    // Only now, with every byte sent or copied: the guest may reuse a buffer the
    // moment it sees it used (Linux frees it and the next write gets the memory).
    q.push_used(chain->head, 0);  // the device writes nothing into a transmit buffer
    if (!all_sent) break;         // no further chain until on_host_writable() drains the rest
  }
  transport_->notify_used(kTxQueue);
}

void VirtioConsole::save(StateWriter& out) const {
  uint8_t flags = 0;
  const bool bits[] = {state_.multiport, state_.port_added, state_.port_ready, state_.guest_connected,
                       state_.host_connected, state_.host_eof};
  for (size_t i = 0; i < std::size(bits); ++i) flags |= static_cast<uint8_t>(bits[i] ? 1u << i : 0u);
  out.u8(flags);
  out.u32(static_cast<uint32_t>(state_.control_out.size()));
  for (const std::string& m : state_.control_out) out.string(m);
  out.string(state_.tx_pending);
}

void VirtioConsole::load(SectionReader& in) {
  VirtioConsoleState s;
  const uint8_t flags = in.u8();
  bool* bits[] = {&s.multiport, &s.port_added, &s.port_ready, &s.guest_connected, &s.host_connected, &s.host_eof};
  for (size_t i = 0; i < std::size(bits); ++i) *bits[i] = (flags & (1u << i)) != 0;
  const uint32_t messages = in.u32();
  if (messages > kMaxControlBacklog) in.fail(fmt::format("{} queued control messages (max {})", messages, kMaxControlBacklog));
  for (uint32_t i = 0; i < messages && in.ok(); ++i) s.control_out.push_back(in.string(kMaxControlMessage));
  s.tx_pending = in.string(kMaxDataChainBytes);
  if (!in.ok()) return;
  // The restored device talks to a fresh, connected host end: if the guest was last
  // told the host was gone, tell it the host is back.
  s.host_eof = false;
  if (s.port_ready && !s.host_connected && s.control_out.size() < kMaxControlBacklog) {
    state_ = std::move(s);
    send_control(VIRTIO_CONSOLE_PORT_OPEN, 1);
    state_.host_connected = true;
    return;
  }
  s.host_connected = true;
  state_ = std::move(s);
}

}  // namespace kiln::vmm::kvm
