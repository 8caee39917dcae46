// A scratch guest for the engines' own VM tests, which need no kiln agent: static
// busybox as /init in an initramfs holding the cached kernel's virtio modules. /init
// finds the agent's and the share channel's ports by name, so it runs on either engine
// (QEMU numbers them vport0p1 and vport0p2 on one bus; the kvm engine's two consoles
// make vport0p0 and vport1p0), then answers every line it reads on the agent port with
// "echo:<line>", after acting on it:
//   set:V          remember V (guest state a snapshot must keep); "get" answers "echo:get=V"
//   disk           answer "echo:disk=<the first 16 bytes of /dev/vda>"
//   share-out:W    write "W\n" to the share port (guest -> host), then answer
//   share-in       read one line L from the share port (host -> guest), answer "echo:share-in=L"
//   share-rpc:W    write "W\n" to the share port, read one line L back, answer "echo:share-rpc=L"
//                  (a request and its reply, as the share relay's FUSE traffic goes)
// The share port is opened at the first share command and then kept open, as the guest's
// share relay does: a virtio-serial port is no pipe across opens. Host bytes that reach
// a closed port are dropped (Linux discards them; QEMU may even take them from its socket
// just after the guest closed the port, with the room it computed while it was open, and
// drop them), so the host writes only to a port the guest holds open.
#pragma once

#include "common/clock.h"
#include "common/fs.h"
#include "common/result.h"
#include "common/subprocess.h"
#include "vmm/engine.h"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace kiln::vmm::testing {

inline constexpr const char* kBusybox = "/usr/bin/busybox";

inline constexpr const char* kBusyboxInit = R"init(#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_console virtio_blk; do /bin/busybox insmod /lib/modules/$m.ko; done
/bin/busybox mount -t sysfs sys /sys
# The /dev node of the virtio-serial port named $1, once the driver has named it.
port() {
  for p in /sys/class/virtio-ports/*; do
    if /bin/busybox test "$(/bin/busybox cat $p/name 2>/dev/null)" = "$1"; then echo "/dev/${p##*/}"; return; fi
  done
}
n=0
until /bin/busybox test -n "$agent" -a -n "$share" || /bin/busybox test $n -gt 1000; do
  agent=$(port org.kiln.agent.0); share=$(port org.kiln.share.0)
  /bin/busybox usleep 10000; n=$((n+1))
done
echo "busybox guest: agent port $agent, share port $share" > /dev/console
# The node can appear a moment before the port accepts opens (ENXIO): retry in a subshell.
n=0; until (exec 3<>$agent) 2>/dev/null || /bin/busybox test $n -gt 1000; do /bin/busybox usleep 10000; n=$((n+1)); done
exec 3<>$agent
# The share port, on fd 4 from its first use on (see the top of busybox_guest.h).
open_share() {
  if /bin/busybox test -z "$share_open"; then exec 4<>"$share"; share_open=1; fi
}
# A virtio-serial port reads EOF while no host is connected (between bake and restore).
while true; do
  while IFS= read -r line <&3; do
    case "$line" in
      set:*) v="${line#set:}";;
      get) line="get=$v";;
      disk) line="disk=$(/bin/busybox head -c 16 /dev/vda)";;
      share-out:*) open_share; echo "${line#share-out:}" >&4;;
      share-in) open_share; IFS= read -r s <&4; line="share-in=$s";;
      share-rpc:*) open_share; echo "${line#share-rpc:}" >&4; IFS= read -r s <&4; line="share-rpc=$s";;
    esac
    echo "echo:$line" >&3
  done
  /bin/busybox usleep 10000
done
)init";

/// The kernel the vm.setup.bake fixture fetched into $KILN_TEST_CACHE.
struct CachedKernel {
  std::filesystem::path root;  ///< the unpacked package: boot/, lib/modules/
  std::string version;
  std::filesystem::path image() const { return root / "boot" / ("vmlinuz-" + version); }
};

inline Result<CachedKernel> cached_kernel() {
  const char* cache = std::getenv("KILN_TEST_CACHE");
  if (!cache) return make_error("KILN_TEST_CACHE is not set: run via ctest (vm.setup.bake fetches the kernel)");
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(cache) / "kernels", ec))
    if (std::filesystem::exists(e.path() / "kiln-kernel.complete"))
      return CachedKernel{e.path(), e.path().filename().string()};
  return make_error("no kernel in {}/kernels: run via ctest (vm.setup.bake fetches it)", cache);
}

/// Build the busybox initramfs for `kernel` in `dir` (as dir/initramfs.cpio).
inline Result<std::filesystem::path> build_busybox_initramfs(const CachedKernel& kernel,
                                                             const std::filesystem::path& dir) {
  namespace stdfs = std::filesystem;
  if (!fs::is_executable_file(kBusybox))
    return make_error("{} is missing: the test needs busybox-static (scripts/bootstrap installs it)", kBusybox);
  const stdfs::path root = dir / "initramfs";
  for (const char* d : {"bin", "dev", "proc", "sys", "lib/modules"}) KILN_TRY(fs::make_dirs(root / d));
  std::error_code ec;
  stdfs::copy_file(kBusybox, root / "bin" / "busybox", stdfs::copy_options::overwrite_existing, ec);
  if (ec) return make_error("cannot copy {}: {}", kBusybox, ec.message());
  const stdfs::path mods = kernel.root / "lib/modules" / kernel.version / "kernel/drivers";
  for (const char* m : {"virtio/virtio_ring.ko", "virtio/virtio.ko", "virtio/virtio_mmio.ko", "char/virtio_console.ko",
                        "block/virtio_blk.ko"}) {
    stdfs::copy_file(mods / m, root / "lib/modules" / stdfs::path(m).filename(), stdfs::copy_options::overwrite_existing,
                     ec);
    if (ec) return make_error("cannot copy kernel module {}: {}", (mods / m).string(), ec.message());
  }
  KILN_TRY(fs::write_file_atomic(root / "init", kBusyboxInit));
  if (::chmod((root / "init").c_str(), 0755) != 0) return make_error("cannot make {}/init executable", root.string());
  const stdfs::path cpio = dir / "initramfs.cpio";
  KILN_ASSIGN_OR_RETURN(auto built, run_captured({"sh", "-c", "cd '" + root.string() + "' && find . | cpio -o -H newc > '" +
                                                                  cpio.string() + "'"}));
  if (built.exit_code != 0) return make_error("cpio failed: {}", built.err);
  return cpio;
}

/// Read from `fd` until `needle` appears; returns everything read, or an error text.
inline Result<std::string> read_until(int fd, const std::string& needle, std::chrono::milliseconds timeout) {
  std::string got;
  const Deadline deadline = deadline_after(timeout);
  while (got.find(needle) == std::string::npos) {
    pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, poll_timeout_ms(deadline));
    if (r == 0) return make_error("timed out waiting for '{}', got '{}'", needle, got);
    if (r < 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) return make_error("EOF waiting for '{}', got '{}'", needle, got);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    if (got.size() > (1 << 20)) return make_error("runaway output");
  }
  return got;
}

inline Result<void> write_all(int fd, const std::string& bytes) {
  if (::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
    return make_error("write of {} bytes to fd {} failed", bytes.size(), fd);
  return {};
}

/// Guest writes to a port before the host connects are lost, so the host speaks first:
/// ping the agent port until the guest's echo comes back.
inline Result<std::string> wait_guest_ready(Vm& vm, std::chrono::milliseconds timeout) {
  using namespace std::chrono_literals;
  const Deadline deadline = deadline_after(timeout);
  for (;;) {
    KILN_TRY(write_all(vm.agent_fd(), "ready\n"));
    auto got = read_until(vm.agent_fd(), "echo:ready\n", 200ms);
    if (got) return got;
    if (Clock::now() >= deadline) return make_error("guest never echoed: {}", got.error().message);
    if (got.error().message.starts_with("EOF")) return got;
  }
}

/// Bytes both ways over the share channel (Vm::share_fd()), each asked for over the
/// agent port: "<tag>-from-guest" must arrive on share_fd(), "<tag>-from-host" written
/// to share_fd() must be read by the guest, and a guest request "<tag>-request" must
/// get the host's reply "<tag>-reply" (the share relay's traffic).
inline Result<void> share_both_ways(Vm& vm, const std::string& tag) {
  using namespace std::chrono_literals;
  const std::string out = tag + "-from-guest";
  KILN_TRY(write_all(vm.agent_fd(), "share-out:" + out + "\n"));
  auto arrived = read_until(vm.share_fd(), out + "\n", 20s);
  if (!arrived) return with_context("guest -> host over the share port", arrived.error());
  if (*arrived != out + "\n") return make_error("the share port carried '{}', expected '{}\\n'", *arrived, out);
  KILN_TRY(read_until(vm.agent_fd(), "echo:share-out:" + out + "\n", 20s));

  const std::string in = tag + "-from-host";
  KILN_TRY(write_all(vm.share_fd(), in + "\n"));
  KILN_TRY(write_all(vm.agent_fd(), "share-in\n"));
  auto read = read_until(vm.agent_fd(), "echo:share-in=" + in + "\n", 20s);
  if (!read) return with_context("host -> guest over the share port", read.error());

  const std::string request = tag + "-request", reply = tag + "-reply";
  KILN_TRY(write_all(vm.agent_fd(), "share-rpc:" + request + "\n"));
  auto asked = read_until(vm.share_fd(), request + "\n", 20s);
  if (!asked) return with_context("a guest request over the share port", asked.error());
  KILN_TRY(write_all(vm.share_fd(), reply + "\n"));
  auto answered = read_until(vm.agent_fd(), "echo:share-rpc=" + reply + "\n", 20s);
  if (!answered) return with_context("the host's reply over the share port", answered.error());
  return {};
}

}  // namespace kiln::vmm::testing
