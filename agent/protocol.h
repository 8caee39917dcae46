// The kiln agent protocol: framed, versioned messages between the host and the
// guest agent over the virtio-console channel. Byte layout: docs/protocol.md.
//
// Dependency-free (std only) because the static guest agent links it too.
// Everything the guest sends is hostile input: decoding is bounded and total.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::proto {

inline constexpr uint16_t kMagic = 0x4C4B;  // "KL" little-endian on the wire
/// Layout of the 8-byte frame header. It changes only if the header does, so
/// builds of different protocol versions can still read each other's hello.
inline constexpr uint8_t kFrameVersion = 1;
/// The newest and the oldest message-set version this build speaks. hello and
/// hello_ack agree on one; every other message follows that version's layout.
inline constexpr uint32_t kProtocolVersion = 2;
inline constexpr uint32_t kMinProtocolVersion = 2;
inline constexpr size_t kHeaderSize = 8;
inline constexpr uint32_t kMaxPayload = 1u << 20;  // 1 MiB: larger frames are garbage
inline constexpr uint32_t kMaxArgs = 4096;          // argv / env entries per exec
inline constexpr uint32_t kMaxEntropy = 4096;
inline constexpr uint32_t kMaxMessage = 4096;       // error / exec_failed text
inline constexpr uint32_t kMaxAgentVersion = 256;
inline constexpr uint32_t kMaxUser = 256;          // exec user name[:group]
inline constexpr uint32_t kMaxShareRoots = 64;      // trees one share request mounts
inline constexpr uint32_t kMaxOutputEntries = 10000;  // entries one collect sends
/// Where a command's outputs go in the guest (its KILN_OUTPUT_DIR), and its core dumps.
inline constexpr const char* kGuestOutputDir = "/tmp/kiln-outputs";
/// Where an instrumented command's gcov counters go in the guest (its GCOV_PREFIX).
inline constexpr const char* kGuestCoverageDir = "/tmp/kiln-gcov";
/// Name of the virtio-serial port carrying the protocol (/sys/class/virtio-ports/*/name).
inline constexpr const char* kAgentPortName = "org.kiln.agent.0";
/// Name of the port carrying a share's raw FUSE messages (SHARES: no kiln framing on it).
inline constexpr const char* kSharePortName = "org.kiln.share.0";
/// Largest FUSE message either way on the share port: a 1 MiB READ reply plus headers.
/// Longer is a protocol error; the side that sees it stops the share.
inline constexpr uint32_t kMaxShareMessage = (1u << 20) + 4096;

/// Optional features, offered by the agent in hello and chosen by the host in hello_ack.
/// Bits not listed are reserved: an agent never offers them, a host never picks them.
namespace feature {
inline constexpr uint64_t stdin_stream = 1u << 0;  ///< exec with StdinMode::stream, stdin_* messages
inline constexpr uint64_t shares = 1u << 1;        ///< share: host trees mounted read-only over the share port
inline constexpr uint64_t exec_user = 1u << 2;     ///< exec may name the user to run as (Exec::user)
inline constexpr uint64_t outputs = 1u << 3;       ///< collect: a guest directory sent back as a tar stream
inline constexpr uint64_t terminal = 1u << 4;      ///< exec with StdinMode::terminal, resize
inline constexpr uint64_t detach = 1u << 5;        ///< detach: leave the running command be, answer its exec
}  // namespace feature
/// Every feature this build implements.
inline constexpr uint64_t kFeatures = feature::stdin_stream | feature::shares | feature::exec_user |
                                      feature::outputs | feature::terminal | feature::detach;

/// What the command's standard input is (exec).
enum class StdinMode : uint8_t {
  null = 0,    ///< the guest's /dev/null
  stream = 1,  ///< a pipe the agent fills from stdin_data, under credit it grants
  /// feature::terminal: a new guest pseudo-terminal is the command's stdin, stdout,
  /// stderr and controlling terminal; stdin_data is typed into it, its output comes
  /// back as stdout_data, its size is the last resize the host sent.
  terminal = 2,
};

enum class MsgType : uint8_t {
  // guest -> host
  hello = 1,         ///< agent is up: its protocol versions, agent version, features
  ok = 2,            ///< the oldest outstanding request succeeded
  error = 3,         ///< the oldest outstanding request failed: str message
  stdout_data = 4,   ///< bytes the command wrote to stdout
  stderr_data = 5,   ///< bytes the command wrote to stderr
  exit = 6,          ///< the command ended: how, code, bytes it wrote, OOM kills
  exec_failed = 7,   ///< exec did not start: i32 errno, str message
  stdin_credit = 8,  ///< the host may send this many more stdin bytes
  output_data = 9,   ///< bytes of the tar stream a collect request asked for
  collected = 10,    ///< the collect request ended: what was sent and what was left out
  detached = 11,     ///< the exec's reply after a detach: u32 pid of the command, still running
  // host -> guest
  hello_ack = 16,   ///< the protocol version and features the host uses -> ok | error
  sync = 17,        ///< u64 realtime ns, bytes entropy -> ok
  put_file = 18,    ///< str path, u32 mode, u64 size; then `size` bytes in file_data -> ok
  file_data = 19,   ///< bytes of the file being put
  symlink = 20,     ///< str path, str target -> ok
  mkdir = 21,       ///< str path, u32 mode (parents created too) -> ok
  exec = 22,        ///< strs argv, strs env, str cwd, u8 stdin -> output..., exit | exec_failed
  poweroff = 23,    ///< sync disks and power off; no reply
  stdin_data = 24,  ///< bytes for the running command's stdin (within credit); no reply
  stdin_eof = 25,   ///< the running command's stdin ends; no reply
  share = 26,       ///< strs root paths: mount the host's trees there (feature::shares) -> ok
  collect = 27,     ///< str dir, u64 max bytes (feature::outputs) -> output_data..., collected | error
  resize = 28,      ///< u32 rows, u32 cols: the terminal's size from now on (feature::terminal); no reply
  detach = 29,      ///< stop supervising the running command, leave it running (feature::detach) -> detached
};

/// True for message types a guest may send.
bool is_guest_message(MsgType t);
/// True for message types the host may send.
bool is_host_message(MsgType t);
/// True for host messages that feed a running command rather than make a request:
/// they get no reply, and outside a command they are dropped (resize is kept for
/// the next terminal).
bool is_stream_message(MsgType t);
const char* type_name(MsgType t);

struct Frame {
  MsgType type{};
  std::string payload;
};

/// One encoded frame, header included. `payload.size()` must be <= kMaxPayload.
std::string encode_frame(MsgType type, std::string_view payload);

/// Incremental frame decoder. Feed raw channel bytes, pop complete frames.
/// Holds at most one header plus kMaxPayload bytes; a bad header poisons it.
class FrameDecoder {
 public:
  /// Appends bytes. Returns false (and `error()` says why) once the stream is garbage.
  bool feed(const char* data, size_t size);
  /// Pops the next complete frame, if one is buffered.
  std::optional<Frame> next();
  /// True when next() would return a frame.
  bool has_frame() const;
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  bool check_header();
  std::string buf_;
  size_t pos_ = 0;
  std::string error_;
};

// ---- payload encoding: little-endian integers, u32-length-prefixed strings ----

class Writer {
 public:
  Writer& u8(uint8_t v);
  Writer& u32(uint32_t v);
  Writer& i32(int32_t v) { return u32(static_cast<uint32_t>(v)); }
  Writer& u64(uint64_t v);
  Writer& str(std::string_view s);
  Writer& strs(const std::vector<std::string>& v);
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

/// Bounded reader: a short or oversized field sets failed() and yields zero values.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  uint8_t u8();
  uint32_t u32();
  int32_t i32() { return static_cast<int32_t>(u32()); }
  uint64_t u64();
  std::string str(size_t max_len = kMaxPayload);
  std::vector<std::string> strs(uint32_t max_count);
  bool failed() const { return failed_; }
  /// Whole payload consumed and nothing failed.
  bool done() const { return !failed_ && pos_ == in_.size(); }
  /// True if bytes remain (an optional trailing field follows).
  bool more() const { return !failed_ && pos_ < in_.size(); }

 private:
  bool need(size_t n);
  std::string_view in_;
  size_t pos_ = 0;
  bool failed_ = false;
};

// ---- messages ----

struct Hello {
  uint32_t protocol_version = kProtocolVersion;  ///< the newest the agent speaks
  std::string agent_version;
  uint32_t min_protocol_version = kMinProtocolVersion;  ///< the oldest it speaks
  uint64_t features = kFeatures;                        ///< what it offers
};
struct HelloAck {
  uint32_t protocol_version = kProtocolVersion;  ///< the one both ends use from now on
  uint64_t features = 0;                         ///< what the host uses (a subset of the offer)
};
struct Sync {
  uint64_t realtime_ns = 0;
  std::string entropy;
};
struct PutFile {
  std::string path;
  uint32_t mode = 0644;
  uint64_t size = 0;
};
struct Symlink {
  std::string path;
  std::string target;
};
struct Mkdir {
  std::string path;
  uint32_t mode = 0755;
};
struct Exec {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
  StdinMode stdin_mode = StdinMode::null;
  /// feature::exec_user: run as this user of the guest's /etc/passwd and /etc/group —
  /// "name", "uid", "name:group", "uid:gid" (the OCI config's User syntax). Encoded only
  /// when non-empty, after stdin_mode; "" runs as root.
  std::string user;
};
struct Exit {
  bool signaled = false;
  int32_t code = 0;           ///< exit status, or signal number when signaled
  uint64_t stdout_bytes = 0;  ///< what the command wrote to stdout (sent or not)
  uint64_t stderr_bytes = 0;
  uint32_t oom_kills = 0;     ///< processes the guest's OOM killer ended while it ran
  /// feature::outputs: whether kGuestCoverageDir holds anything now (the command was
  /// built with --coverage and wrote its counters). Encoded only when set, last.
  std::optional<bool> coverage = std::nullopt;
};
struct StdinCredit {
  uint32_t bytes = 0;
};
/// A terminal's size in character cells (resize); 0 means unknown, as in struct winsize.
struct WindowSize {
  uint16_t rows = 0;
  uint16_t cols = 0;
};
struct ExecFailed {
  int32_t err = 0;  ///< errno from execve (ENOENT, EACCES, ...)
  std::string message;
};
struct ErrorReply {
  std::string message;
};
/// The host's shared trees, by the guest path each appears at; root i is the share's
/// entry "i". Paths are safe guest paths (is_safe_guest_path), 1 to kMaxShareRoots of them.
struct Share {
  std::vector<std::string> roots;
};
/// Send the tree under `dir` (a safe guest path) back as a ustar stream of regular
/// files, directories and symlinks (never followed), at most `max_bytes` of file
/// contents and kMaxOutputEntries entries; what does not fit is left out and named.
struct Collect {
  std::string dir;
  uint64_t max_bytes = 0;
};
struct Detached {
  uint32_t pid = 0;  ///< the command's process (its session and process group), left running
};
struct Collected {
  uint64_t bytes = 0;      ///< file contents sent
  uint32_t entries = 0;    ///< entries sent
  uint32_t left_out = 0;   ///< entries left out (over a bound, a name ustar cannot hold, a special file)
  std::string note;        ///< why, for the user (at most kMaxMessage bytes)
};

std::string encode(const Hello& m);
std::string encode(const HelloAck& m);
std::string encode(const Sync& m);
std::string encode(const PutFile& m);
std::string encode(const Symlink& m);
std::string encode(const Mkdir& m);
std::string encode(const Exec& m);
std::string encode(const Exit& m);
std::string encode(const ExecFailed& m);
std::string encode(const ErrorReply& m);
std::string encode(const StdinCredit& m);
std::string encode(const WindowSize& m);
std::string encode(const Detached& m);
std::string encode(const Share& m);
std::string encode(const Collect& m);
std::string encode(const Collected& m);

/// Also accepts protocol 1's shorter hello (version and agent version only; it
/// then offers no features and speaks only that version), so the error can name it.
std::optional<Hello> decode_hello(std::string_view payload);
std::optional<HelloAck> decode_hello_ack(std::string_view payload);
std::optional<Sync> decode_sync(std::string_view payload);
std::optional<PutFile> decode_put_file(std::string_view payload);
std::optional<Symlink> decode_symlink(std::string_view payload);
std::optional<Mkdir> decode_mkdir(std::string_view payload);
std::optional<Exec> decode_exec(std::string_view payload);
std::optional<Exit> decode_exit(std::string_view payload);
std::optional<ExecFailed> decode_exec_failed(std::string_view payload);
std::optional<ErrorReply> decode_error(std::string_view payload);
std::optional<StdinCredit> decode_stdin_credit(std::string_view payload);
std::optional<WindowSize> decode_window_size(std::string_view payload);
std::optional<Share> decode_share(std::string_view payload);
std::optional<Collect> decode_collect(std::string_view payload);
std::optional<Collected> decode_collected(std::string_view payload);
std::optional<Detached> decode_detached(std::string_view payload);

/// The newest protocol version both this build and a peer speaking
/// [peer_min, peer_max] know, or nothing when the ranges do not meet.
std::optional<uint32_t> common_version(uint32_t peer_min, uint32_t peer_max);
/// "2" or "2-3": a version range for messages.
std::string version_range(uint32_t min, uint32_t max);

/// Guest paths must be absolute, without "..", NUL or empty components.
bool is_safe_guest_path(std::string_view path);

}  // namespace kiln::proto
