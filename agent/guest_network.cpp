#include "agent/guest_network.h"

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "agent/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

constexpr const char* kPrivateInterface = "dummy0";

// /32 and /128: the kernel adds only the local route for each, no subnet route, and the
// guest has no default route, so nothing addressed off the machine has a way out.
// fd00::/8 is unique-local; 6b69:6c6e spells "kiln".
constexpr uint8_t kPrivateIpv4[4] = {10, 254, 0, 1};
constexpr uint8_t kPrivateIpv6[16] = {0xfd, 0x00, 0x6b, 0x69, 0x6c, 0x6e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

// RTM_NEWADDR carrying one attribute, IFA_LOCAL (the kernel takes IFA_ADDRESS to be the
// same when it is absent). Laid out as the kernel reads it: each part is 4-byte aligned,
// so no padding sits between them (checked below).
struct AddrRequest {
  nlmsghdr header;
  ifaddrmsg ifa;
  rtattr local;
  uint8_t address[16];  // 4 bytes used for IPv4
};
static_assert(offsetof(AddrRequest, ifa) == sizeof(nlmsghdr));
static_assert(offsetof(AddrRequest, local) == sizeof(nlmsghdr) + sizeof(ifaddrmsg));
static_assert(offsetof(AddrRequest, address) == offsetof(AddrRequest, local) + sizeof(rtattr));

// Returns whether `name` is up now; logs why not otherwise.
bool set_link_up(const char* name) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) {
    log(name, " not brought up: ", sys_error("socket"));
    return false;
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) != 0) {
    log(name, " not brought up: ", sys_error("SIOCGIFFLAGS"));
    return false;
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) != 0) {
    log(name, " not brought up: ", sys_error("SIOCSIFFLAGS"));
    return false;
  }
  return true;
}

// The kernel's answer to request `seq`: 0, or the errno it failed with.
int read_ack(int sock, uint32_t seq) {
  // An error ack echoes the request (~44 bytes) after its header.
  alignas(nlmsghdr) char buf[512];
  // rtnetlink handles a request inside sendto(), so the ack is queued already: never block PID 1 on it.
  ssize_t n = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0) return errno;
  nlmsghdr header;
  nlmsgerr ack;
  if (static_cast<size_t>(n) < sizeof header + sizeof ack) return EPROTO;
  std::memcpy(&header, buf, sizeof header);
  std::memcpy(&ack, buf + sizeof header, sizeof ack);
  if (header.nlmsg_type != NLMSG_ERROR || header.nlmsg_seq != seq) return EPROTO;
  return -ack.error;  // the kernel sends -errno, 0 for success
}

// Adds `address`/`prefix_len` (family AF_INET or AF_INET6) to interface `index`.
void add_address(int sock, unsigned index, int family, const uint8_t* address, uint8_t prefix_len, uint32_t seq) {
  const size_t size = family == AF_INET ? 4 : 16;
  AddrRequest req{};
  req.header.nlmsg_len = static_cast<uint32_t>(offsetof(AddrRequest, address) + size);
  req.header.nlmsg_type = RTM_NEWADDR;
  req.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  req.header.nlmsg_seq = seq;
  req.ifa.ifa_family = static_cast<uint8_t>(family);
  req.ifa.ifa_prefixlen = prefix_len;
  // No duplicate address detection: nothing else is on the link to collide with.
  req.ifa.ifa_flags = family == AF_INET6 ? IFA_F_NODAD : 0;
  req.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  req.ifa.ifa_index = index;
  req.local.rta_type = IFA_LOCAL;
  req.local.rta_len = static_cast<unsigned short>(sizeof(rtattr) + size);
  std::memcpy(req.address, address, size);

  const char* what = family == AF_INET ? "IPv4" : "IPv6";
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  // SAFETY: sockaddr_nl is a sockaddr of family AF_NETLINK; the kernel reads sizeof kernel bytes.
  if (::sendto(sock, &req, req.header.nlmsg_len, 0, reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel) < 0) {
    log(kPrivateInterface, ": ", what, " address not added: ", sys_error("sendto"));
    return;
  }
  int err = read_ack(sock, seq);
  if (err != 0 && err != EEXIST)
    log(kPrivateInterface, ": ", what, " address not added: RTM_NEWADDR: ", errno_text(err));
}

}  // namespace

void bring_up_loopback() {
  // The kernel assigns 127.0.0.1/8 and ::1 itself once lo is up.
  set_link_up("lo");
}

void bring_up_private_interface() {
  unsigned index = ::if_nametoindex(kPrivateInterface);
  if (index == 0) {
    log("no ", kPrivateInterface, " (the guest kernel has no dummy module, or it did not load): the guest has only "
        "loopback addresses, so getaddrinfo(AI_ADDRCONFIG) finds no address for localhost");
    return;
  }
  if (!set_link_up(kPrivateInterface)) return;
  UniqueFd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock.valid()) {
    log(kPrivateInterface, ": addresses not added: ", sys_error("netlink socket"));
    return;
  }
  add_address(sock.get(), index, AF_INET, kPrivateIpv4, 32, 1);
  add_address(sock.get(), index, AF_INET6, kPrivateIpv6, 128, 2);
}

}  // namespace kiln::agent
