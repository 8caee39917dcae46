#include "vmm/qemu/qemu_command.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace kiln::vmm::qemu {
namespace {

QemuCommand sample(LaunchMode mode, Accel accel = Accel::tcg) {
  QemuCommand c;
  c.binary = "/usr/bin/qemu-system-x86_64";
  c.accel = accel;
  c.mode = mode;
  c.guest.kernel = "/k/vmlinuz";
  c.guest.initramfs = "/k/initrd.cpio";
  c.guest.cmdline = "console=ttyS0 panic=-1 quiet";
  c.guest.memory_mib = 384;
  c.guest.vcpus = 2;
  c.memory_file = "/store/snap/memory";
  c.console_log = "/tmp/kiln-vm-abc/console.log";
  c.agent_socket = "/tmp/kiln-vm-abc/agent.sock";
  c.share_socket = "/tmp/kiln-vm-abc/share.sock";
  c.qmp_socket = "/tmp/kiln-vm-abc/qmp.sock";
  return c;
}

/// Every value given to `flag` (flags like -device repeat).
std::vector<std::string> values_of(const std::vector<std::string>& argv, const std::string& flag) {
  std::vector<std::string> out;
  for (size_t i = 1; i + 1 < argv.size(); ++i)
    if (argv[i] == flag) out.push_back(argv[i + 1]);
  return out;
}

std::string value_of(const std::vector<std::string>& argv, const std::string& flag) {
  auto v = values_of(argv, flag);
  EXPECT_EQ(v.size(), 1u) << flag;
  return v.empty() ? "" : v[0];
}

bool has(const std::vector<std::string>& argv, const std::string& arg) {
  return std::find(argv.begin(), argv.end(), arg) != argv.end();
}

TEST(QemuCommand, BootUsesMicrovmWithTimersAndSharedFileRam) {
  auto argv = build_qemu_argv(sample(LaunchMode::boot));
  EXPECT_EQ(argv[0], "/usr/bin/qemu-system-x86_64");
  EXPECT_EQ(value_of(argv, "-M"), "microvm,pit=on,pic=on,rtc=on,memory-backend=mem");
  EXPECT_EQ(value_of(argv, "-m"), "384M");
  EXPECT_EQ(value_of(argv, "-smp"), "2");
  EXPECT_EQ(value_of(argv, "-object"),
            "memory-backend-file,id=mem,size=384M,mem-path=/store/snap/memory,share=on");
  for (const char* flag : {"-nodefaults", "-no-user-config", "-no-reboot"}) EXPECT_TRUE(has(argv, flag)) << flag;
  EXPECT_EQ(value_of(argv, "-display"), "none");
  EXPECT_FALSE(has(argv, "-incoming"));
}

TEST(QemuCommand, KernelInitrdAndCmdlineAreSeparateArguments) {
  auto argv = build_qemu_argv(sample(LaunchMode::boot));
  EXPECT_EQ(value_of(argv, "-kernel"), "/k/vmlinuz");
  EXPECT_EQ(value_of(argv, "-initrd"), "/k/initrd.cpio");
  EXPECT_EQ(value_of(argv, "-append"), "console=ttyS0 panic=-1 quiet");
}

TEST(QemuCommand, AgentAndShareChannelsConsoleAndQmp) {
  auto argv = build_qemu_argv(sample(LaunchMode::boot));
  auto chardevs = values_of(argv, "-chardev");
  ASSERT_EQ(chardevs.size(), 3u);
  EXPECT_EQ(chardevs[0], "file,id=console,path=/tmp/kiln-vm-abc/console.log");
  EXPECT_EQ(chardevs[1], "socket,id=agent,path=/tmp/kiln-vm-abc/agent.sock,server=on,wait=off");
  EXPECT_EQ(chardevs[2], "socket,id=share,path=/tmp/kiln-vm-abc/share.sock,server=on,wait=off");
  EXPECT_EQ(value_of(argv, "-serial"), "chardev:console");
  // Both ports on the one virtio-serial bus, each on its own socket.
  auto devices = values_of(argv, "-device");
  EXPECT_EQ(devices, (std::vector<std::string>{"virtio-serial-device",
                                               "virtserialport,chardev=agent,name=org.kiln.agent.0",
                                               "virtserialport,chardev=share,name=org.kiln.share.0"}));
  EXPECT_EQ(value_of(argv, "-qmp"), "unix:/tmp/kiln-vm-abc/qmp.sock,server=on,wait=off");
}

TEST(QemuCommand, DisksAreRawVirtioBlkDrivesInOrder) {
  QemuCommand c = sample(LaunchMode::restore);
  c.guest.disks = {DiskSpec{"/d/a,b.img", true}, DiskSpec{"/d/rw.img", false}};
  auto argv = build_qemu_argv(c);
  EXPECT_EQ(values_of(argv, "-drive"),
            (std::vector<std::string>{"file=/d/a,,b.img,format=raw,if=none,id=disk0,readonly=on",
                                      "file=/d/rw.img,format=raw,if=none,id=disk1,readonly=off"}));
  auto devices = values_of(argv, "-device");
  ASSERT_EQ(devices.size(), 5u);
  EXPECT_EQ(devices[3], "virtio-blk-device,drive=disk0,serial=kiln-disk0");
  EXPECT_EQ(devices[4], "virtio-blk-device,drive=disk1,serial=kiln-disk1");
}

TEST(QemuCommand, TscHintIsAppendedOnce) {
  auto c = sample(LaunchMode::boot);
  c.tsc_khz = 2596143;
  EXPECT_EQ(value_of(build_qemu_argv(c), "-append"), "console=ttyS0 panic=-1 quiet tsc_early_khz=2596143");
  c.guest.cmdline = "console=ttyS0 tsc_early_khz=1000000";
  EXPECT_EQ(value_of(build_qemu_argv(c), "-append"), "console=ttyS0 tsc_early_khz=1000000");
  c.guest.cmdline = "";
  EXPECT_EQ(value_of(build_qemu_argv(c), "-append"), "tsc_early_khz=2596143");
}

TEST(QemuCommand, AccelPicksCpuModel) {
  auto tcg = build_qemu_argv(sample(LaunchMode::boot, Accel::tcg));
  EXPECT_EQ(value_of(tcg, "-accel"), "tcg");
  EXPECT_EQ(value_of(tcg, "-cpu"), "max");
  auto kvm = build_qemu_argv(sample(LaunchMode::boot, Accel::kvm));
  EXPECT_EQ(value_of(kvm, "-accel"), "kvm");
  EXPECT_EQ(value_of(kvm, "-cpu"), "host");
}

TEST(QemuCommand, RestoreDiffersOnlyInPrivateRamAndIncoming) {
  auto boot = build_qemu_argv(sample(LaunchMode::boot));
  auto restore = build_qemu_argv(sample(LaunchMode::restore));
  EXPECT_EQ(value_of(restore, "-object"),
            "memory-backend-file,id=mem,size=384M,mem-path=/store/snap/memory,share=off");
  ASSERT_GE(restore.size(), 2u);
  EXPECT_EQ(restore[restore.size() - 2], "-incoming");
  EXPECT_EQ(restore.back(), "defer");
  // Same device model, or the migration stream would not load.
  restore.resize(restore.size() - 2);
  ASSERT_EQ(boot.size(), restore.size());
  int differing = 0;
  for (size_t i = 0; i < boot.size(); ++i) differing += boot[i] != restore[i];
  EXPECT_EQ(differing, 1);
}

TEST(QemuCommand, CommasInPathsAreDoubled) {
  auto c = sample(LaunchMode::restore);
  c.memory_file = "/store/a,b/memory";
  c.qmp_socket = "/tmp/x,y/qmp.sock";
  c.share_socket = "/tmp/x,y/share.sock";
  auto argv = build_qemu_argv(c);
  EXPECT_EQ(value_of(argv, "-object"), "memory-backend-file,id=mem,size=384M,mem-path=/store/a,,b/memory,share=off");
  EXPECT_EQ(value_of(argv, "-qmp"), "unix:/tmp/x,,y/qmp.sock,server=on,wait=off");
  EXPECT_EQ(values_of(argv, "-chardev").back(), "socket,id=share,path=/tmp/x,,y/share.sock,server=on,wait=off");
  EXPECT_EQ(escape_option_value(",,a,"), ",,,,a,,");
  EXPECT_EQ(escape_option_value("plain"), "plain");
}

TEST(QemuCommand, RestoreForLayerMapsRamSharedAndWaitsForIncoming) {
  auto boot = build_qemu_argv(sample(LaunchMode::boot));
  auto layer = build_qemu_argv(sample(LaunchMode::restore_shared));
  // Shared: the guest's writes land in the layer's own copy of the RAM file, so
  // save_snapshot can skip RAM (x-ignore-shared) like a bake does.
  EXPECT_EQ(value_of(layer, "-object"), "memory-backend-file,id=mem,size=384M,mem-path=/store/snap/memory,share=on");
  ASSERT_GE(layer.size(), 2u);
  EXPECT_EQ(layer[layer.size() - 2], "-incoming");
  EXPECT_EQ(layer.back(), "defer");
  layer.resize(layer.size() - 2);
  EXPECT_EQ(boot, layer);
}

}  // namespace
}  // namespace kiln::vmm::qemu
