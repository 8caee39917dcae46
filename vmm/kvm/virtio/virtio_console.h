// virtio-console with VIRTIO_CONSOLE_F_MULTIPORT and one port (id 0), named so the
// guest agent finds it under /sys/class/virtio-ports/*/name. The port's bytes are
// bridged to a host stream fd (one end of a socketpair; the engine holds the other).
//
// Queues: 0 port-0 receiveq (host->guest), 1 port-0 transmitq (guest->host),
//         2 control receiveq (host->guest), 3 control transmitq (guest->host).
// Control handshake (Linux drivers/char/virtio_console.c):
//   guest DEVICE_READY(1)  -> host PORT_ADD(0)
//   guest PORT_READY(0,1)  -> host PORT_NAME(0, name) then PORT_OPEN(0,1)
//   guest PORT_OPEN(0,1/0) -> the guest opened/closed the port; host data flows only
//                             while it is open (Linux discards data for a closed port).
// Flow control, both directions bounded:
//   guest->host: a chain's bytes are sent to the fd, and what the fd does not take is
//   copied out (at most one chain, <= kMaxDataChainBytes), before the chain is returned
//   to the guest: a guest may reuse a buffer the moment it sees it used. No further
//   chain is consumed until on_host_writable() drains the copy.
//   host->guest: bytes are read from the fd only into rx buffers the guest posted;
//   with none posted the fd is not read (io_interest().readable is false).
// Guest output is never dropped silently: if the fd fails for good (EPIPE, ENOBUFS...)
// the bytes it cannot take are counted and `on_failure` is told once why, so the
// engine ends the run with that error. The host end hanging up (read EOF) only ends
// host->guest data; guest output still goes out while the fd takes it.
//
// Threads: vCPU threads (MMIO through VirtioMmio) and the I/O thread (on_host_*) both
// call in; everything runs under the device mutex.
#pragma once

#include "agent/protocol.h"
#include "common/unique_fd.h"
#include "vmm/kvm/virtio/guest_error_log.h"
#include "vmm/kvm/virtio/virtio_device.h"

#include <deque>
#include <functional>
#include <string>

namespace kiln::vmm::kvm {

/// Plain snapshot state of the console (port and buffered bytes).
struct VirtioConsoleState {
  bool multiport = false;        ///< driver accepted VIRTIO_CONSOLE_F_MULTIPORT
  bool port_added = false;       ///< PORT_ADD sent
  bool port_ready = false;       ///< guest sent PORT_READY(0,1); name and open sent
  bool guest_connected = false;  ///< a guest process has the port open
  bool host_connected = true;    ///< what the guest was told about the host end
  bool host_eof = false;         ///< the host end sends nothing more (read 0 or a read error)
  std::deque<std::string> control_out;  ///< control messages waiting for guest buffers
  std::string tx_pending;               ///< guest bytes the host fd has not taken yet
};

class VirtioConsole final : public VirtioDevice {
 public:
  static constexpr uint64_t kMaxDataChainBytes = 1ull << 20;
  static constexpr size_t kMaxControlBacklog = 16;
  /// Longest control message (header + port name); longer names are truncated.
  static constexpr size_t kMaxControlMessage = 256;

  /// `host_fd`: a nonblocking stream socket. `wake_io`: called (device mutex held; it
  /// must not call back into the device) when io_interest() changed on a vCPU thread,
  /// so the I/O thread re-polls; may be empty if the I/O thread polls io_interest()
  /// on a timer.
  explicit VirtioConsole(UniqueFd host_fd, std::function<void()> wake_io = {},
                         std::string port_name = proto::kAgentPortName);

  /// Called once, device mutex held (it must not call back into the device), when
  /// guest output could not be delivered to host_fd() and is lost; the argument says
  /// what was lost and why ("sending 13 bytes of guest output to kiln: Broken pipe").
  /// The engine decides what that means for the run (the agent's channel: it ends).
  void set_on_failure(std::function<void(const std::string&)> on_failure) { on_failure_ = std::move(on_failure); }
  /// Guest output bytes that could not be delivered (0 unless on_failure was called).
  uint64_t lost_bytes() const;

  /// The fd the I/O thread polls.
  int host_fd() const { return fd_.get(); }
  struct IoInterest {
    bool readable = false;  ///< poll POLLIN: the device can move host bytes into the guest
    bool writable = false;  ///< poll POLLOUT: guest bytes are waiting for the host fd
  };
  /// What to poll host_fd() for; query it again after every on_host_*() call, after
  /// wake_io, and after load(). When both are false, leave the fd out of the poll set
  /// entirely: poll() reports POLLHUP even for no requested events, which would spin.
  IoInterest io_interest() const;
  /// The I/O thread saw POLLIN (or POLLHUP) on host_fd().
  void on_host_readable();
  /// The I/O thread saw POLLOUT on host_fd().
  void on_host_writable();

  std::string name() const override { return "virtio-console"; }
  uint32_t device_type() const override;
  uint64_t features() const override;
  size_t queue_count() const override { return 4; }
  uint64_t queue_max_chain_bytes(size_t q) const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(VirtioTransport& transport, uint64_t driver_features) override;
  void reset() override;
  void queue_notify(size_t index) override;
  void save(StateWriter& out) const override;
  void load(SectionReader& in) override;

 private:
  IoInterest interest_locked() const;
  void send_control(uint16_t event, uint16_t value, std::string_view payload = {});
  void handle_control_tx();
  void handle_control_message(uint32_t id, uint16_t event, uint16_t value);
  void flush_control();
  void pump_rx();
  void pump_tx();
  /// Send tx_pending; false while the fd still holds some back (EAGAIN).
  bool flush_tx_pending();
  /// Send one chain's bytes, copying what the fd does not take into tx_pending (false).
  bool transmit(const DescriptorChain& chain);
  /// `bytes` of guest output cannot be delivered: count them, report the first failure.
  void output_lost(uint64_t bytes, const std::string& why);
  void host_hung_up();
  /// Wake the I/O thread when what it should poll for differs from what it polls for.
  void wake_if_changed();

  UniqueFd fd_;
  std::function<void()> wake_io_;
  std::function<void(const std::string&)> on_failure_;
  std::string port_name_;
  VirtioTransport* transport_ = nullptr;
  VirtioConsoleState state_;
  mutable IoInterest polled_;  ///< the I/O thread's last io_interest() answer
  // The host fd failed for good: not device state (a restore gets a fresh fd), and a
  // guest reset does not mend the fd.
  bool output_failed_ = false;
  uint64_t lost_bytes_ = 0;
  GuestErrorLog log_{"virtio-console"};
};

}  // namespace kiln::vmm::kvm
