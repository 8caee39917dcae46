// kiln: run tests in microVMs restored from a golden snapshot.
#include "common/fs.h"
#include "common/log.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "runner/interrupt.h"

int main(int argc, char** argv) {
  kiln::interrupt::install();
  CLI::App app{"kiln: run every test in a fresh Linux microVM restored from a golden snapshot"};
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: a command's own exit code passes through; killed by signal N -> 128+N;\n"
      "124 timeout, 125 kiln/VM failure, 126 not executable in the guest, 127 not found in the guest, 2 usage.");
  int exit_code = 0;
  kiln::runner::register_run(app, exit_code);
  kiln::runner::register_bake(app, exit_code);
  kiln::runner::register_snapshots(app, exit_code);
  kiln::runner::register_resources(app, exit_code);
  kiln::runner::register_tests(app, exit_code);
  kiln::runner::register_images(app, exit_code);
  kiln::runner::register_serve(app, exit_code);
  kiln::runner::register_shell(app, exit_code);
  // After parsing, before any subcommand touches the cache (--help and --version do
  // not, nor `kiln tests`, which only reads a build tree).
  app.parse_complete_callback([&app] {
    if (app.got_subcommand("tests")) return;
    if (auto cache = kiln::fs::prepare_cache_root(); !cache) {
      kiln::log::error(cache.error().message);
      throw CLI::RuntimeError(kiln::exit_code::kiln_error);
    }
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kiln::exit_code::usage;
  }
  return exit_code;
}
