// `kiln run [options] -- COMMAND [ARGS...]`
#include "common/fs.h"
#include "common/log.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "runner/fixture.h"
#include "runner/golden.h"
#include "runner/interrupt.h"
#include "runner/run_in_vm.h"

#include <memory>

namespace kiln::runner {
namespace {

struct RunCliOptions {
  VmOptions vm;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::vector<std::string> files;
  std::string cwd;
  double timeout = 0;
  std::string setup;
  bool setup_given = false;  // --setup '' is an error, not "no setup"
  std::vector<std::string> setup_files;
  bool no_layers = false;
};

/// What a run restores and what is already in it.
struct RestorePoint {
  snapshot::Snapshot snapshot;
  bool payload_in_place = false;  ///< a payload layer: only sync + exec
  bool setup_done = false;        ///< a fixture layer (or one over it): the setup has run
};

// golden -> [fixture layer] -> [payload layer]: the deepest snapshot this run can start
// from, each layer found or built once.
Result<RestorePoint> choose_restore_point(const snapshot::Store& store, Golden& golden, const vmm::GuestSpec& spec,
                                          const Payload& payload, const std::string& exe_name,
                                          const std::optional<SetupSpec>& setup, const Payload& setup_payload_files,
                                          bool verbose, Progress& progress) {
  RestorePoint point{golden.snapshot, false, false};
  if (setup) {
    KILN_ASSIGN_OR_RETURN(auto recipe, fixture_recipe(*setup, setup_payload_files, verbose));
    bool setup_failed = false;
    recipe.populate = [&setup_failed, run = recipe.populate](vmm::Vm& vm) -> Result<void> {
      auto r = run(vm);
      setup_failed = !r;
      return r;
    };
    auto fixture = ensure_layer(store, *golden.engine, spec, point.snapshot, recipe, progress);
    if (!fixture && (setup_failed || fixture.error().kind == ErrorKind::interrupted)) return fixture.take_error();
    if (!fixture) {
      // Saving failed, not the setup (disk full, an engine without layers): this run
      // still works the layer-less way, the setup running in its own VM.
      log::info("{}; running the setup in this run's VM instead", fixture.error().message);
      return point;
    }
    point = {std::move(fixture->snapshot), false, true};
  }
  if (payload.empty()) return point;
  LayerRecipe recipe;
  recipe.kind = std::string(snapshot::kLayerKindPayload);
  KILN_ASSIGN_OR_RETURN(recipe.content_digest, payload.content_digest());
  recipe.label = "payload: " + exe_name;
  recipe.doing = "placing the payload of " + exe_name + " once (payload layer)";
  recipe.populate = [&payload](vmm::Vm& vm) { return place_payload(vm, payload); };
  auto layer = ensure_layer(store, *golden.engine, spec, point.snapshot, recipe, progress);
  if (!layer) {
    if (layer.error().kind == ErrorKind::interrupted) return layer.take_error();
    // The layer only saves time: without it (disk full, an engine that cannot save
    // layers) this run still works, shipping its payload as before layers existed.
    log::info("{}; sending the payload with this run instead", layer.error().message);
    return point;
  }
  point.snapshot = std::move(layer->snapshot);
  point.payload_in_place = true;
  return point;
}

// A command with a '/' is a host file shipped into the guest; a bare name is looked up
// on the guest's PATH (busybox applets), as a shell would.
Result<void> resolve_command(RunCliOptions& o, Payload& payload, int& early_exit) {
  std::string& cmd = o.argv.front();
  if (cmd.find('/') == std::string::npos) return {};
  std::error_code ec;
  auto abs = std::filesystem::absolute(cmd, ec).lexically_normal();
  if (!std::filesystem::exists(abs, ec)) {
    early_exit = exit_code::not_found;
    return make_error("{}: no such file on the host", cmd);
  }
  if (!fs::is_executable_file(abs)) {
    early_exit = exit_code::not_executable;
    return make_error("{}: not an executable file (check its permissions)", abs.string());
  }
  cmd = abs.string();
  auto added = payload.add_executable_with_closure(abs);
  if (!added && added.error().kind == ErrorKind::not_executable) early_exit = exit_code::not_executable;
  return added;
}

int execute(RunCliOptions& o) {
  apply_log_options(o.vm);
  log::ScopedTimer total("kiln run");
  Payload payload;
  int early_exit = exit_code::kiln_error;
  if (auto r = resolve_command(o, payload, early_exit); !r) {
    log::error(r.error().message);
    return early_exit;
  }
  for (const auto& f : o.files) {
    if (auto r = payload.add_path(f); !r) {
      log::error(with_context("--file " + f, r.error()).message);
      return exit_code::kiln_error;
    }
  }

  std::optional<SetupSpec> setup;
  Payload setup_files;
  if (o.setup_given) {
    setup = SetupSpec{o.setup, o.setup_files, o.env};
    auto p = setup_payload(*setup);
    if (!p) {
      log::error(p.error().message);
      return exit_code::kiln_error;
    }
    setup_files = std::move(*p);
  } else if (!o.setup_files.empty()) {
    log::error("--setup-file needs --setup: it lists files the setup command uses");
    return exit_code::kiln_error;
  }

  RunRequest request;
  request.argv = o.argv;
  request.env = o.env;
  std::error_code ec;
  request.cwd = o.cwd.empty() ? std::filesystem::current_path(ec).string() : o.cwd;
  if (o.timeout > 0) request.timeout_seconds = o.timeout;
  request.verbose = o.vm.verbosity > 0;

  Progress progress;
  o.vm.guest.progress = [&progress](const std::string& s) { progress.step(s); };
  auto fail = [&progress](const Error& e) {
    progress.done();
    log::error(e.message);
    if (e.kind == ErrorKind::interrupted) return exit_code::signal_base + interrupt::received();
    return exit_code::kiln_error;
  };

  auto guest = prepare_guest(o.vm.guest);
  if (!guest) return fail(guest.error());
  snapshot::Store store(fs::cache_root() / "snapshots");
  auto golden = ensure_golden(store, *guest, o.vm.engine, progress, false, request.verbose);
  if (!golden) return fail(golden.error());

  RestorePoint point{golden->snapshot, false, false};
  if (layers_enabled(o.no_layers)) {
    auto chosen = choose_restore_point(store, *golden, guest->spec, payload,
                                       std::filesystem::path(o.argv.front()).filename().string(), setup, setup_files,
                                       request.verbose, progress);
    if (!chosen) return fail(chosen.error());
    point = std::move(*chosen);
  }

  std::unique_ptr<vmm::Vm> vm;
  {
    log::ScopedTimer t("restore");
    auto restore = [&](const snapshot::Snapshot& snap) -> Result<std::unique_ptr<vmm::Vm>> {
      KILN_ASSIGN_OR_RETURN(auto files, store.restore_files(snap, golden->engine->maps_overlays()));
      return golden->engine->restore(guest->spec, files);
    };
    auto restored = restore(point.snapshot);
    if (!restored && restored.error().kind == ErrorKind::general && !point.snapshot.is_layer()) {
      // A snapshot that passed its checksums but does not restore (e.g. QEMU was
      // upgraded under it) is rebaked once rather than failing every run.
      log::info("snapshot {} did not restore ({}); rebaking it", point.snapshot.id(), restored.error().message);
      golden = ensure_golden(store, *guest, o.vm.engine, progress, true, request.verbose);
      if (!golden) return fail(golden.error());
      point = {golden->snapshot, false, false};
      restored = restore(point.snapshot);
    } else if (!restored && restored.error().kind == ErrorKind::general) {
      // A layer that verified but does not restore: run this test the layer-less way.
      log::info("layer {} did not restore ({}); running from the golden snapshot this time", point.snapshot.id(),
                restored.error().message);
      point = {golden->snapshot, false, false};
      restored = restore(point.snapshot);
    }
    if (!restored) return fail(restored.error());
    vm = std::move(restored).value();
  }
  progress.done();
  store.mark_used(point.snapshot);
  if (point.snapshot.is_layer()) store.mark_used(golden->snapshot);  // its base is in use too
  if (setup && !point.setup_done) {
    log::verbose("running the setup command (no fixture layer)");
    if (auto r = run_setup_in(*vm, *setup, setup_files, request.verbose); !r) return fail(r.error());
  }
  if (point.payload_in_place)
    log::verbose("the payload ({} entries, {} KiB) is in the layer: not sending it", payload.entries().size(),
                 payload.total_bytes() >> 10);
  else if (!payload.empty())
    log::verbose("sending the payload: {} entries, {} KiB", payload.entries().size(), payload.total_bytes() >> 10);

  auto outcome = run_in_vm(*vm, point.payload_in_place ? Payload{} : payload, request);
  vm->destroy();
  if (!outcome) {
    const Error& e = outcome.error();
    if (e.kind == ErrorKind::timeout) {
      log::error(fmt::format("timeout: {} did not finish within {} s; the VM was killed", o.argv.front(), o.timeout));
      return exit_code::timeout;
    }
    return fail(e);
  }
  log::verbose("{} {}", o.argv.front(), outcome->summary);
  return outcome->exit_code;
}

}  // namespace

void register_run(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<RunCliOptions>();
  auto* cmd = app.add_subcommand("run", "Run a command in a fresh microVM restored from the golden snapshot");
  cmd->footer(
      "A COMMAND containing '/' is a host executable: it, its shared libraries (as the host's dynamic\n"
      "loader resolves them) and every --file appear in the guest at the same absolute paths.\n"
      "A bare name runs from the guest's PATH (busybox applets).\n"
      "Example: kiln run --timeout 30 --file ./testdata -- ./build/my_test --gtest_brief=1");
  add_vm_options(*cmd, o->vm);
  // One value per flag (repeat the flag for more), so `--file X -- cmd --flag` keeps `--`
  // as the end of kiln's options rather than the end of --file's values.
  cmd->add_option("--env", o->env, "Set K=V in the command's environment (repeatable)")
      ->allow_extra_args(false)
      ->check([](const std::string& s) { return s.find('=') == std::string::npos || s.front() == '='
                                                    ? std::string("expected K=V")
                                                    : std::string(); });
  cmd->add_option("--cwd", o->cwd, "Working directory in the guest (default: the current directory, created empty)");
  cmd->add_option("--timeout", o->timeout, "Kill the VM after SEC seconds; kiln then exits 124")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--file", o->files, "Host file or directory to place in the guest at the same path (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--setup", o->setup,
                  "Run CMD (/bin/sh -c, in /) once and save the VM as a fixture snapshot every run with the "
                  "same setup starts from (e.g. start and seed a server)");
  cmd->add_option("--setup-file", o->setup_files,
                  "Host file the setup needs (repeatable; executables come with their libraries)")
      ->allow_extra_args(false);
  cmd->add_flag("--no-layers", o->no_layers,
                "Build no payload or fixture layers: ship the payload (and run the setup) on every run "
                "(also KILN_NO_LAYERS=1)");
  cmd->add_option("command", o->argv, "The command and its arguments (put them after --)")->required();
  cmd->callback([o, cmd, &exit_code] {
    o->setup_given = cmd->count("--setup") > 0;
    exit_code = execute(*o);
  });
}

}  // namespace kiln::runner
