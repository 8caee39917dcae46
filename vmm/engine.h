// The engine interface: everything above it (store, runner, agent protocol,
// CMake) is engine-agnostic. Engines: `qemu` (vmm/qemu/), `kvm` (vmm/kvm/).
#pragma once

#include "common/clock.h"
#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::vmm {

/// What to boot: identical for bake and restore (restore must match the bake).
/// A raw disk image the guest sees as a virtio block device (vda, vdb... in order).
/// A snapshot does not contain the disk: restore it with the same, unchanged image.
struct DiskSpec {
  std::filesystem::path image;
  bool read_only = true;
  bool operator==(const DiskSpec&) const = default;
};

/// Most disks a guest may have (each takes a virtio-mmio slot and an interrupt line).
inline constexpr size_t kMaxDisks = 4;

/// The set of devices every engine gives a guest, as a number. Bump it whenever a device
/// is added or removed or changes what the guest sees: each engine's identity() carries
/// it (device_layout_tag()), so it is part of the snapshot key, and a golden baked with
/// another set of devices is never restored into this one (a new golden is baked).
///   1 (identities without a tag): the agent port, the disks
///   2: the share port (proto::kSharePortName) too
inline constexpr uint32_t kDeviceLayoutVersion = 2;

/// "devices-2": kDeviceLayoutVersion as engines put it in their identity(). Inline: the
/// engines' libraries do not link the engine-choice code (engine.cpp).
inline std::string device_layout_tag() { return "devices-" + std::to_string(kDeviceLayoutVersion); }

struct GuestSpec {
  std::filesystem::path kernel;     ///< bzImage
  std::filesystem::path initramfs;  ///< newc cpio with the agent as /init
  std::string cmdline;              ///< kernel command line
  uint32_t memory_mib = 256;
  uint32_t vcpus = 1;
  std::vector<DiskSpec> disks = {};
};

/// `length` bytes of guest RAM starting at guest-physical `guest_offset` are stored in
/// a layer file at `file_offset`. All three are multiples of the 4 KiB page size.
struct MemoryExtent {
  uint64_t guest_offset = 0;
  uint64_t file_offset = 0;
  uint64_t length = 0;
  bool operator==(const MemoryExtent&) const = default;
};

/// One diff layer: pages that differ from everything below it (snapshot/ diff layers).
struct MemoryOverlay {
  std::filesystem::path file;         ///< the layer's page file
  std::vector<MemoryExtent> extents;  ///< sorted by guest_offset, non-overlapping
};

/// The engine-owned files of one snapshot, inside its store directory.
struct SnapshotFiles {
  std::filesystem::path state;   ///< device/CPU state (QEMU: migration stream; KVM: docs/kvm-state-format.md)
  std::filesystem::path memory;  ///< guest RAM image (full size), mapped copy-on-write on restore
  /// Diff layers over `memory`, applied bottom-up. Only engines whose
  /// maps_overlays() is true get a non-empty list; others get a flattened `memory`.
  std::vector<MemoryOverlay> overlays = {};
};

/// A running VM. Destroying it kills the VMM process and removes its runtime files.
class Vm {
 public:
  virtual ~Vm() = default;
  /// Connected stream fd to the guest agent channel (virtio-console). Owned by the Vm.
  virtual int agent_fd() const = 0;
  /// Connected stream fd to the share channel: a second virtio-serial port, named
  /// proto::kSharePortName, that carries a byte stream between the guest and the host (tree
  /// shares relay FUSE messages over it). Present from the cold boot on, so part of every
  /// golden; unused until a run starts sharing. Owned by the Vm: dup() it to hand it on.
  virtual int share_fd() const = 0;
  /// Everything the guest wrote to its serial console so far (kernel log), for -v and errors.
  virtual std::string console_output() = 0;
  /// If the VMM process has died: a description ("qemu exited with code 1: <stderr tail>").
  virtual std::optional<std::string> vmm_exited() = 0;
  /// Pause the VM, write its state to `files.state` and make `files.memory` hold the
  /// complete guest RAM (a booted VM or one from restore_for_layer already has its RAM
  /// there). The VM stays paused; destroy it afterwards.
  virtual Result<void> save_snapshot(const SnapshotFiles& files) = 0;
  /// Pause the VM, however it was started, and save it as it is into `files` (new
  /// files) as a self-contained snapshot that Engine::restore() brings back: a failed
  /// test's VM kept for `kiln shell`. How its RAM is stored is the engine's (qemu: in
  /// the state stream, `files.memory` an empty sparse file of the guest's size; kvm:
  /// the complete image in `files.memory`, zero pages as holes). Bounded by `deadline`.
  /// The VM stays paused; destroy it afterwards.
  virtual Result<void> save_whole(const SnapshotFiles& files, Deadline deadline) = 0;
  /// Kill the VMM now (idempotent).
  virtual void destroy() = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  /// Engine name as the user types it: "qemu".
  virtual std::string name() const = 0;
  /// Everything about the engine and the host a snapshot depends on, the device layout
  /// included ("qemu-7.2.0/devices-2/tcg/tsc-2596000khz"): part of the snapshot key, so
  /// compared as a whole, never taken apart (docs/engines.md lists what each holds).
  virtual std::string identity() const = 0;
  /// Does this engine run its guests on KVM (the kvm engine, or QEMU with -accel kvm)?
  virtual bool on_kvm() const = 0;
  /// Cold-boot `spec` with guest RAM backed by a new shared file at `files.memory`.
  virtual Result<std::unique_ptr<Vm>> boot(const GuestSpec& spec, const SnapshotFiles& files) = 0;
  /// Restore a VM from `files`, RAM mapped copy-on-write (the files are never modified). Running on return.
  virtual Result<std::unique_ptr<Vm>> restore(const GuestSpec& spec, const SnapshotFiles& files) = 0;
  /// Restore `from` (never modified) so that a later Vm::save_snapshot(`to`) saves the
  /// VM as a new, complete snapshot in `to` (a layer: payload or fixture).
  virtual Result<std::unique_ptr<Vm>> restore_for_layer(const GuestSpec& spec, const SnapshotFiles& from,
                                                        const SnapshotFiles& to) = 0;
  /// True if restore() maps `SnapshotFiles::overlays` itself (no flattened file needed).
  virtual bool maps_overlays() const = 0;
};

struct EngineOptions {
  std::string name = "auto";   ///< kvm | qemu | auto
  std::string accel = "auto";  ///< kvm | tcg | auto (qemu engine)
  bool verbose = false;
};

/// The guest sizes an engine can boot (docs/engines.md, "Limits"). A request outside
/// them is the user's error, found before anything starts — never a failed bake, which
/// could be taken for a broken KVM.
struct EngineLimits {
  uint32_t min_memory_mib = 0;
  uint32_t max_memory_mib = 0;
  uint32_t max_vcpus = 0;
};

/// The limits of engine `name` ("kvm" or "qemu"); nullopt for any other name.
std::optional<EngineLimits> engine_limits(std::string_view name);

/// Can the engine `options.name` boot a guest of `spec.memory_mib` and `spec.vcpus`
/// ("auto": can any engine)? The error names the option, the limit, the engine and
/// what to do: "--memory 4096: the kvm engine supports at most 3328 MiB; use --engine
/// qemu or --memory 3328 or less". Pure: touches neither /dev/kvm nor qemu.
Result<void> check_engine_limits(const EngineOptions& options, const GuestSpec& spec);

/// Pick and construct an engine for guests of `spec`'s size. The limits are checked
/// first: a named engine that cannot serve `spec` fails before it is opened, and `auto`
/// only considers engines that can (4096 MiB: qemu, without a look at /dev/kvm).
/// Otherwise `auto` resolves to the best engine usable on this host.
Result<std::unique_ptr<Engine>> make_engine(const EngineOptions& options, const GuestSpec& spec = {});

}  // namespace kiln::vmm
