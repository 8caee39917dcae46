#include "vmm/qemu/qemu_command.h"

#include "agent/protocol.h"

#include <fmt/format.h>

namespace kiln::vmm::qemu {

std::string escape_option_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

std::vector<std::string> build_qemu_argv(const QemuCommand& c) {
  const bool incoming = c.mode != LaunchMode::boot;
  const bool shared = c.mode != LaunchMode::restore;
  const std::string mem = fmt::format("{}M", c.guest.memory_mib);
  std::string cmdline = c.guest.cmdline;
  if (c.tsc_khz && cmdline.find("tsc_early_khz=") == std::string::npos)
    cmdline += fmt::format("{}tsc_early_khz={}", cmdline.empty() ? "" : " ", *c.tsc_khz);
  std::vector<std::string> argv = {
      c.binary,
      // pit/pic/rtc on: without a PIT the kernel cannot calibrate the TSC under TCG and
      // stalls at boot ("tsc: Unable to calibrate against PIT"). Measured here: with them
      // the Debian cloud kernel reaches /init in ~1.2 s and hvc0 in ~2.4 s under TCG.
      "-M", "microvm,pit=on,pic=on,rtc=on,memory-backend=mem",
      "-accel", accel_name(c.accel),
      // KVM: the host CPU. TCG: "max" — every feature TCG emulates; a fixed older model
      // (qemu64) left the guest stuck after /init here. The snapshot key includes the
      // qemu version, and "max" is stable within one.
      "-cpu", c.accel == Accel::kvm ? "host" : "max",
      "-smp", std::to_string(c.guest.vcpus),
      "-m", mem,
      // Guest RAM in a named file: the snapshot's memory file. Bake maps it shared, so RAM
      // *is* the file and migration skips it (x-ignore-shared); restore maps it private,
      // so the guest's writes are copy-on-write and the golden file never changes.
      "-object",
      fmt::format("memory-backend-file,id=mem,size={},mem-path={},share={}", mem,
                  escape_option_value(c.memory_file.string()), shared ? "on" : "off"),
      "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
      "-chardev", "file,id=console,path=" + escape_option_value(c.console_log.string()),
      "-serial", "chardev:console",
      "-kernel", c.guest.kernel.string(),
      "-initrd", c.guest.initramfs.string(),
      "-append", cmdline,
      "-device", "virtio-serial-device",
      "-chardev", "socket,id=agent,path=" + escape_option_value(c.agent_socket.string()) + ",server=on,wait=off",
      // A named virtio-serial port, not a virtconsole: same guest driver (virtio_console),
      // but no tty layer, whose hvc reads move 16 bytes at a time (~5 MB/s under TCG).
      "-device", "virtserialport,chardev=agent,name=" + std::string(proto::kAgentPortName),
      // The share channel: a second port on the same bus, with its own socket.
      "-chardev", "socket,id=share,path=" + escape_option_value(c.share_socket.string()) + ",server=on,wait=off",
      "-device", "virtserialport,chardev=share,name=" + std::string(proto::kSharePortName),
      "-qmp", "unix:" + escape_option_value(c.qmp_socket.string()) + ",server=on,wait=off",
  };
  // Disks after the ports: every virtio device sits on its own virtio-mmio
  // transport, and the guest finds them through microvm's ACPI table.
  for (size_t i = 0; i < c.guest.disks.size(); ++i) {
    const DiskSpec& d = c.guest.disks[i];
    argv.insert(argv.end(), {"-drive",
                             fmt::format("file={},format=raw,if=none,id=disk{},readonly={}",
                                         escape_option_value(d.image.string()), i, d.read_only ? "on" : "off"),
                             "-device", fmt::format("virtio-blk-device,drive=disk{},serial=kiln-disk{}", i, i)});
  }
  if (incoming) {
    argv.push_back("-incoming");
    argv.push_back("defer");
  }
  return argv;
}

}  // namespace kiln::vmm::qemu
