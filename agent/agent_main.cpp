// kiln-agent: PID 1 (/init) of the initramfs kiln builds. It prepares the guest,
// opens the host channel and serves requests until the host powers the VM off.
// PID 1 exiting panics the kernel, so nothing here may return or throw out of main.

#include <unistd.h>

#include <csignal>
#include <exception>
#include <fstream>
#include <optional>
#include <string>

#include "agent/channel.h"
#include "agent/guest_network.h"
#include "agent/guest_setup.h"
#include "agent/image_root.h"
#include "agent/log.h"
#include "agent/reaper.h"
#include "agent/server.h"

namespace {

constexpr int kChannelWaitMs = 10'000;
constexpr const char* kModuleList = "/kiln/modules";
constexpr const char* kHostnameFile = "/etc/hostname";

[[noreturn]] void give_up(const std::string& why) {
  using namespace kiln::agent;
  log(why);
  // Powering off ends the VM at once, so the host fails fast with this log instead of timing out.
  for (;;) {
    power_off();
    ::sleep(1);
  }
}

std::string read_cmdline() {
  std::ifstream in("/proc/cmdline");
  std::string line;
  std::getline(in, line);
  return line;
}

void enter_image(const std::string& cmdline) {
  using namespace kiln::agent;
  const std::string disk = image_disk_from_cmdline(cmdline);
  if (disk.empty()) return;
  if (std::string error = enter_image_root(disk); !error.empty()) give_up("cannot use the OCI image: " + error);
}

[[noreturn]] void run() {
  using namespace kiln::agent;
  std::signal(SIGPIPE, SIG_IGN);  // a host or command that goes away must not kill PID 1
  mount_basics();
  ensure_stdio();
  load_modules(kModuleList);
  set_hostname(kHostnameFile);
  enable_core_dumps();
  bring_up_loopback();
  bring_up_private_interface();  // after load_modules: the dummy module creates its interface
  enter_image(read_cmdline());    // after load_modules: virtio_blk, squashfs, overlay

  std::string error;
  std::optional<Reaper> reaper = Reaper::create(&error);
  if (!reaper) give_up("cannot watch child processes: " + error);
  std::optional<Channel> channel = Channel::open_port(kiln::proto::kAgentPortName, kChannelWaitMs, &error);
  if (!channel)
    give_up(error + " (is virtio_console loaded and the VM started with a virtserialport of that name?)");

  Server server(*channel, *reaper);
  server.announce();
  server.serve();
}

}  // namespace

int main() {
  if (::getpid() != 1) {
    // It mounts over /tmp and /run and reboots the machine: never on a host by accident.
    kiln::agent::log("kiln-agent is the init of a kiln guest VM; refusing to run as pid ", ::getpid());
    return 2;
  }
  std::set_terminate([] { give_up("fatal: unhandled exception"); });
  try {
    run();
  } catch (const std::exception& e) {
    give_up(std::string("fatal: ") + e.what());
  } catch (...) {
    give_up("fatal: unknown exception");
  }
}
