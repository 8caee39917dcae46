#include "common/log.h"
#include "remote/store_remote.h"
#include "runner/cli.h"
#include "snapshot/store.h"

#include <cstdlib>

namespace kiln::runner {

void add_vm_options(CLI::App& cmd, VmOptions& o, std::function<void()> then) {
  cmd.add_option("--memory", o.guest.memory_mib, "Guest memory in MiB")
      ->check(CLI::Range(64u, 65536u))
      ->capture_default_str();
  cmd.add_option("--cpus", o.guest.vcpus, "Guest vCPUs")->check(CLI::Range(1u, 64u))->capture_default_str();
  cmd.add_option("--engine", o.engine.name,
                 "VM engine: kvm (kiln's own VMM on /dev/kvm), qemu, or auto (kvm when /dev/kvm runs guests, else qemu)")
      ->check(CLI::IsMember({"auto", "kvm", "qemu"}))
      ->capture_default_str();
  cmd.add_option("--accel", o.engine.accel, "QEMU accelerator: kvm, tcg or auto (kvm when /dev/kvm works)")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}))
      ->capture_default_str();
  cmd.add_option("--kernel", o.guest.kernel, "Guest kernel bzImage (default: Debian's cloud kernel, fetched once)")
      ->check(CLI::ExistingFile);
  cmd.add_option("--modules", o.guest.modules, "That kernel's lib/modules/<version> directory")
      ->check(CLI::ExistingDirectory);
  cmd.add_option("--image", o.image.ref,
                 "The guest's root: an OCI image (registry/name:tag, name@sha256:..., debian:bookworm, "
                 "oci:DIR[:tag], docker-archive:FILE) or default (busybox; docs/images.md)")
      ->capture_default_str();
  cmd.add_option("--insecure-registry", o.image.insecure_registries,
                 "Use plain HTTP (no TLS) for this registry HOST[:PORT] only (repeatable; also "
                 "KILN_INSECURE_REGISTRIES=h1,h2)")
      ->allow_extra_args(false);
  cmd.add_option("--registry-ca", o.image.registry_ca, "CA bundle (PEM) that registries' TLS certificates must chain to")
      ->check(CLI::ExistingFile);
  cmd.add_option_function<std::string>(
         "--pull",
         [&o](const std::string& when) {
           o.image.pull = when == "always"  ? image::PullPolicy::always
                          : when == "never" ? image::PullPolicy::never
                                            : image::PullPolicy::missing;
         },
         "When to ask the registry what an image tag names: missing (the default: only when the image is "
         "not stored; its pin otherwise), always, or never")
      ->check(CLI::IsMember({"always", "missing", "never"}))
      ->type_name("WHEN");
  cmd.add_option("--remote-cache", o.remote_cache,
                 "Share snapshots through this OCI registry repository, HOST[:PORT]/REPOSITORY: pull what is not "
                 "baked here, push what is (also KILN_REMOTE_CACHE; docs/fleet.md)")
      ->type_name("REPO");
  cmd.add_flag("-v,--verbose", o.verbosity, "Show progress steps and the guest console log on stderr");
  cmd.add_flag("--timings", o.timings, "Print how long each step of bake and restore took");
  // A size the engine cannot boot is a bad command line (exit 2), refused before any
  // kernel fetch, lock or VM: never a failed bake that could be taken for a broken KVM.
  cmd.parse_complete_callback([&o, then = std::move(then)] {
    vmm::GuestSpec size;
    size.memory_mib = o.guest.memory_mib;
    size.vcpus = o.guest.vcpus;
    if (auto fits = vmm::check_engine_limits(o.engine, size); !fits) throw CLI::ValidationError(fits.error().message);
    if (then) then();
  });
}

Result<void> attach_remote(snapshot::Store& store, const VmOptions& o) {
  remote::RemoteCacheOptions options;
  options.spec = o.remote_cache;
  options.registry.insecure_hosts = o.image.insecure_registries;
  options.registry.ca_bundle = o.image.registry_ca;
  auto wait = std::chrono::seconds(60);
  if (const char* v = std::getenv("KILN_REMOTE_PUSH_WAIT"); v && *v) {
    char* end = nullptr;
    long s = std::strtol(v, &end, 10);
    if (*end != '\0' || s < 0 || s > 86400)
      return make_error("KILN_REMOTE_PUSH_WAIT={}: not a number of seconds (0..86400)", v);
    wait = std::chrono::seconds(s);
  }
  KILN_TRY(remote::attach_remote_cache(store, options, wait));
  return {};
}

void apply_log_options(const VmOptions& o) {
  if (o.verbosity >= 2) log::set_level(log::Level::debug);
  else if (o.verbosity == 1) log::set_level(log::Level::verbose);
  log::set_timings(o.timings);
}

}  // namespace kiln::runner
