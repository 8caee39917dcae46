#include "runner/run_in_vm.h"

#include "common/log.h"
#include "runner/agent_client.h"
#include "runner/coverage.h"
#include "runner/exit_codes.h"
#include "runner/exit_report.h"
#include "runner/guest_text.h"
#include "runner/host_terminal.h"
#include "runner/payload_send.h"
#include "runner/stdin_forward.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>

namespace kiln::runner {
namespace {

using proto::MsgType;

// Setup (restore, sync, payload) has its own generous deadline: the test's
// --timeout starts when the command does, as with a local run.
constexpr auto kSetupTimeout = std::chrono::seconds(120);
// What a setup command's output is kept to (its tail) for the error that shows it.
constexpr size_t kMaxSetupOutput = 64 * 1024;

void write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      // kiln's stdout may be a non-blocking file description it shares with its parent
      // (some CI runners set O_NONBLOCK): wait until the reader takes more, never drop.
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, -1);
      continue;
    }
    if (n <= 0) return;  // host stream closed (e.g. piped into head): drop the rest
    off += static_cast<size_t>(n);
  }
}

std::string fresh_entropy() {
  std::string bytes(64, '\0');
  ssize_t n = ::getrandom(bytes.data(), bytes.size(), 0);
  if (n < 0) n = 0;
  bytes.resize(static_cast<size_t>(n));
  return bytes;
}

uint64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Where a command's output goes: the host's streams for a test, a buffer for a setup.
using OutputSink = std::function<void(MsgType, std::string_view)>;

void to_host_streams(MsgType type, std::string_view data) {
  write_all(type == MsgType::stdout_data ? STDOUT_FILENO : STDERR_FILENO, std::string(data));
}

// What the command does besides writing output: where its stdin comes from (nullptr:
// nowhere), the host terminal whose size its guest terminal follows (kiln run -t),
// and the guest memory to name if the OOM killer ends it.
struct CommandIo {
  StdinForwarder* input = nullptr;
  HostTerminal* terminal = nullptr;
  uint32_t memory_mib = 0;
};

// Input is ready: the host window's new size, then keystrokes or piped bytes.
void forward_input(AgentClient& agent, const CommandIo& io) {
  if (io.terminal && io.terminal->take_resize())
    agent.send(MsgType::resize, proto::encode(io.terminal->size()));
  if (io.input) io.input->forward(agent);
}

// Forward the command's output (and stdin, under the agent's credit) until it ends.
Result<RunOutcome> stream_until_exit(AgentClient& agent, Deadline deadline, const std::string& argv0,
                                     const OutputSink& sink, const CommandIo& io) {
  ReceivedOutput received;
  for (;;) {
    KILN_ASSIGN_OR_RETURN(auto f, agent.next_frame_or_input(deadline, {io.input ? io.input->fd_to_watch(agent) : -1,
                                                                       io.terminal ? io.terminal->resized_fd() : -1}));
    if (!f) {
      forward_input(agent, io);
      continue;
    }
    switch (f->type) {
      case MsgType::stdout_data:
      case MsgType::stderr_data:
        (f->type == MsgType::stdout_data ? received.stdout_bytes : received.stderr_bytes) += f->payload.size();
        sink(f->type, f->payload);
        break;
      case MsgType::stdin_credit: {
        auto c = proto::decode_stdin_credit(f->payload);
        if (!c || !io.input) return make_error("unexpected or malformed stdin_credit frame from the guest agent");
        io.input->add_credit(c->bytes);
        break;
      }
      case MsgType::exit: {
        auto e = proto::decode_exit(f->payload);
        if (!e) return make_error("malformed exit frame from the guest agent");
        return outcome_of_exit(*e, received, io.memory_mib);
      }
      case MsgType::exec_failed: {
        auto e = proto::decode_exec_failed(f->payload);
        if (!e) return make_error("malformed exec_failed frame from the guest agent");
        int code = e->err == ENOENT ? exit_code::not_found : exit_code::not_executable;
        std::string message = escape_guest_text(e->message);
        log::error(e->err == ENOENT ? fmt::format("{}: command not found in the guest", argv0)
                                    : fmt::format("{}: cannot execute in the guest: {}", argv0, message));
        return RunOutcome{code, message, ""};
      }
      case MsgType::error: {
        auto e = proto::decode_error(f->payload);
        return make_error("the guest agent could not run the command: {}",
                          e ? escape_guest_text(e->message) : "(malformed)");
      }
      default:
        return make_error("unexpected {} frame while the command runs", proto::type_name(f->type));
    }
  }
}

// Queue sync + payload (+ shares, + exec), then wait for their replies in order.
Result<void> sync_and_place(AgentClient& agent, const Payload& payload, const proto::Exec* exec,
                            const std::vector<std::string>& shares = {}, bool outputs = false) {
  log::ScopedTimer setup("sync + payload");
  auto deadline = Clock::now() + kSetupTimeout;
  // Pipeline everything: agreement, sync, payload, exec go out back to back; replies come in order.
  agent.restate_agreement();
  agent.send(MsgType::sync, proto::encode(proto::Sync{realtime_ns(), fresh_entropy()}));
  KILN_ASSIGN_OR_RETURN(size_t payload_requests, queue_payload(agent, payload));
  // After the payload: the share's overlays put what the payload placed above the host trees.
  if (!shares.empty()) KILN_TRY(agent.queue_share(shares));
  // Any user the command runs as may write its outputs.
  if (outputs) agent.send(MsgType::mkdir, proto::encode(proto::Mkdir{kGuestOutputDir, 01777}));
  if (exec) agent.send(MsgType::exec, proto::encode(*exec));
  KILN_TRY(agent.expect_ok(deadline, "agreeing on the agent protocol"));
  KILN_TRY(agent.expect_ok(deadline, "setting the guest clock and entropy"));
  for (size_t i = 0; i < payload_requests; ++i)
    KILN_TRY(agent.expect_ok(deadline, "placing " + payload.entries()[i].path + " in the guest"));
  if (!shares.empty()) KILN_TRY(agent.expect_ok(deadline, "sharing the host's trees with the guest"));
  if (outputs) KILN_TRY(agent.expect_ok(deadline, fmt::format("making the command's KILN_OUTPUT_DIR {}", kGuestOutputDir)));
  return {};
}

// An instrumented command (gcc --coverage) writes its counters under the guest's
// coverage directory, whatever it can see of the build tree (coverage.h); a GCOV_PREFIX
// the user set wins.
void add_coverage_env(std::vector<std::string>& env) {
  for (const std::string& kv : env)
    if (kv.starts_with("GCOV_PREFIX=")) return;
  env.push_back(std::string("GCOV_PREFIX=") + proto::kGuestCoverageDir);
  env.push_back("GCOV_PREFIX_STRIP=0");
}

// kiln run -t: the guest terminal is the kind the user's is, unless told otherwise.
void add_terminal_env(std::vector<std::string>& env) {
  for (const std::string& kv : env)
    if (kv.starts_with("TERM=")) return;
  const char* term = std::getenv("TERM");
  env.push_back(std::string("TERM=") + (term && *term ? term : "xterm"));
}

// A process of the run that dumped core (the command, or one it started) left it in
// KILN_OUTPUT_DIR (agent/guest_setup.h), emptied at the start: say where it is now,
// with the command that opens it.
void name_core_dumps(const std::string& program, const OutputsSpec& spec) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(spec.dir, ec)) {
    if (!entry.is_regular_file(ec) || !entry.path().filename().string().starts_with("core.")) continue;
    log::info("{} dumped core: {} (gdb {} {})", program, entry.path().string(), program, entry.path().string());
  }
}

// The collect phase: the command's KILN_OUTPUT_DIR into --output-dir, pass or fail.
Result<void> bring_back_outputs(AgentClient& agent, const RunOutcome& outcome, const OutputsSpec& spec,
                                const std::string& program) {
  log::ScopedTimer t("outputs");
  auto report = collect_tree(agent, Clock::now() + kSetupTimeout, kGuestOutputDir, spec.dir, spec.cap_bytes);
  if (!report)
    return make_error("the command {}, but its outputs could not be brought back: {}", outcome.summary,
                      report.error().message);
  log::verbose("outputs: {} entries, {} bytes in {}", report->entries, report->bytes, spec.dir.string());
  if (report->left_out > 0)
    log::info("warning: outputs: {} entr{} left out of {} (cap {} MiB, --output-cap): {}", report->left_out,
              report->left_out == 1 ? "y" : "ies", spec.dir.string(), spec.cap_bytes >> 20, report->note);
  name_core_dumps(program, spec);
  return {};
}

}  // namespace

std::vector<std::string> default_guest_env() {
  return {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "USER=root",
          "LANG=C.UTF-8", "TMPDIR=/tmp"};
}

proto::Exec exec_for(const RunRequest& request) {
  proto::Exec exec{request.argv, request.base_env.empty() ? default_guest_env() : request.base_env,
                   request.cwd.empty() ? "/" : request.cwd,
                   request.terminal ? proto::StdinMode::terminal : stdin_mode_for(request.stdin_fd, request.interactive),
                   request.user};
  exec.env.insert(exec.env.end(), request.env.begin(), request.env.end());
  if (request.outputs) exec.env.push_back(std::string("KILN_OUTPUT_DIR=") + kGuestOutputDir);
  add_coverage_env(exec.env);
  if (request.terminal) add_terminal_env(exec.env);
  return exec;
}

Result<RunOutcome> run_in_vm(AgentClient& agent, vmm::Vm& vm, const Payload& payload, const RunRequest& request) {
  const proto::Exec exec = exec_for(request);
  std::unique_ptr<HostTerminal> terminal;
  if (request.terminal) {
    KILN_ASSIGN_OR_RETURN(terminal, HostTerminal::enter_raw(request.stdin_fd));
    agent.send(MsgType::resize, proto::encode(terminal->size()));  // the size the terminal starts with
  }
  KILN_TRY(sync_and_place(agent, payload, &exec, request.shares_mounted ? std::vector<std::string>{} : request.shares,
                          request.outputs.has_value()));
  std::optional<StdinForwarder> input;
  if (exec.stdin_mode != proto::StdinMode::null) input.emplace(request.stdin_fd);
  const CommandIo io{input ? &*input : nullptr, terminal.get(), request.memory_mib};

  auto deadline = request.timeout_seconds
                      ? Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(*request.timeout_seconds))
                      : Clock::time_point::max();
  log::ScopedTimer exec_timer("command");
  auto outcome = stream_until_exit(agent, deadline, request.argv.front(), to_host_streams, io);
  terminal.reset();  // the user's terminal as it was, before kiln says anything
  if (request.verbose) write_all(STDERR_FILENO, escape_guest_text(vm.console_output(), true));
  if (!outcome && outcome.error().kind == ErrorKind::general)
    return make_error("{}", with_console_tail(outcome.error().message, vm));
  // The guest's OOM killer: what its kernel said explains a failure; a passing test
  // gets the one line.
  if (outcome && !outcome->notice.empty())
    log::info("{}", outcome->exit_code == 0 ? outcome->notice : with_console_tail(outcome->notice, vm));
  if (outcome && request.outputs) KILN_TRY(bring_back_outputs(agent, *outcome, *request.outputs, request.program));
  if (outcome && outcome->coverage) {
    log::ScopedTimer t("coverage");
    auto merged = bring_back_coverage(agent, Clock::now() + kSetupTimeout);
    if (!merged)
      return make_error("the command {}, but its coverage counters could not be merged into the host's: {}",
                        outcome->summary, merged.error().message);
    log::verbose("coverage: {} .gcda merged, {} without a .gcno of the host build", merged->merged, merged->skipped);
  }
  return outcome;
}

Result<std::optional<uint32_t>> detach_command(AgentClient& agent, Deadline deadline) {
  if (!agent.has_feature(proto::feature::detach))
    return make_error("the guest agent cannot leave its command running (no detach feature)");
  agent.send(MsgType::detach, {});
  for (;;) {
    KILN_ASSIGN_OR_RETURN(auto f, agent.next_frame(deadline));
    switch (f.type) {
      case MsgType::stdout_data:
      case MsgType::stderr_data:
        to_host_streams(f.type, f.payload);  // written before the detach: the test's output
        break;
      case MsgType::stdin_credit:
        break;
      case MsgType::detached: {
        auto d = proto::decode_detached(f.payload);
        if (!d) return make_error("malformed detached frame from the guest agent");
        return std::optional<uint32_t>(d->pid);
      }
      case MsgType::exit:
      case MsgType::exec_failed:
        return std::optional<uint32_t>();  // it ended just before the detach arrived
      default:
        return make_error("unexpected {} frame while detaching from the command", proto::type_name(f.type));
    }
  }
}

Result<void> place_payload(vmm::Vm& vm, const Payload& payload) {
  AgentClient agent(vm.agent_fd(), [&vm] { return vm.vmm_exited(); });
  return sync_and_place(agent, payload, nullptr);
}

Result<SetupOutcome> run_setup(vmm::Vm& vm, const Payload& payload, const std::string& command,
                               const std::vector<std::string>& base_env, const std::vector<std::string>& env,
                               bool echo) {
  AgentClient agent(vm.agent_fd(), [&vm] { return vm.vmm_exited(); });
  proto::Exec exec{{"/bin/sh", "-c", command}, base_env.empty() ? default_guest_env() : base_env, "/",
                   proto::StdinMode::null, {}};
  exec.env.insert(exec.env.end(), env.begin(), env.end());
  KILN_TRY(sync_and_place(agent, payload, &exec));
  log::ScopedTimer t("setup command");
  SetupOutcome result;
  auto collect = [&](MsgType, std::string_view data) {
    // Bounded: the guest decides how much it prints; the tail is what explains a failure.
    result.output.append(data);
    if (result.output.size() > kMaxSetupOutput) result.output.erase(0, result.output.size() - kMaxSetupOutput);
    // -v: on stderr only; the host's stdout is the test's.
    if (echo) to_host_streams(MsgType::stderr_data, data);
  };
  auto outcome = stream_until_exit(agent, Clock::now() + kSetupTimeout, "/bin/sh", collect, {});
  if (!outcome) {
    if (outcome.error().kind == ErrorKind::timeout)
      return make_error("the setup command did not finish within {} s (nothing was saved); its output so far:\n{}",
                        std::chrono::duration_cast<std::chrono::seconds>(kSetupTimeout).count(), result.output);
    if (outcome.error().kind != ErrorKind::general) return outcome.take_error();
    return make_error("{}", with_console_tail(outcome.error().message, vm));
  }
  result.exit_code = outcome->exit_code;
  result.summary = outcome->summary;
  return result;
}

}  // namespace kiln::runner
