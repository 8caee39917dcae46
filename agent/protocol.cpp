#include "agent/protocol.h"

#include <cstring>

namespace kiln::proto {

bool is_guest_message(MsgType t) {
  auto v = static_cast<uint8_t>(t);
  return v >= 1 && v <= 11;
}

bool is_host_message(MsgType t) {
  auto v = static_cast<uint8_t>(t);
  return v >= 16 && v <= 29;
}

bool is_stream_message(MsgType t) {
  return t == MsgType::stdin_data || t == MsgType::stdin_eof || t == MsgType::resize || t == MsgType::detach;
}

const char* type_name(MsgType t) {
  switch (t) {
    case MsgType::hello: return "hello";
    case MsgType::ok: return "ok";
    case MsgType::error: return "error";
    case MsgType::stdout_data: return "stdout";
    case MsgType::stderr_data: return "stderr";
    case MsgType::exit: return "exit";
    case MsgType::exec_failed: return "exec_failed";
    case MsgType::stdin_credit: return "stdin_credit";
    case MsgType::output_data: return "output_data";
    case MsgType::collected: return "collected";
    case MsgType::hello_ack: return "hello_ack";
    case MsgType::sync: return "sync";
    case MsgType::put_file: return "put_file";
    case MsgType::file_data: return "file_data";
    case MsgType::symlink: return "symlink";
    case MsgType::mkdir: return "mkdir";
    case MsgType::exec: return "exec";
    case MsgType::poweroff: return "poweroff";
    case MsgType::stdin_data: return "stdin_data";
    case MsgType::stdin_eof: return "stdin_eof";
    case MsgType::share: return "share";
    case MsgType::collect: return "collect";
    case MsgType::resize: return "resize";
    case MsgType::detach: return "detach";
    case MsgType::detached: return "detached";
  }
  return "unknown";
}

namespace {
void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
}  // namespace

std::string encode_frame(MsgType type, std::string_view payload) {
  std::string out;
  out.reserve(kHeaderSize + payload.size());
  put_le(out, kMagic, 2);
  put_le(out, kFrameVersion, 1);
  put_le(out, static_cast<uint8_t>(type), 1);
  put_le(out, payload.size(), 4);
  out.append(payload);
  return out;
}

bool FrameDecoder::feed(const char* data, size_t size) {
  if (failed()) return false;
  // Compact consumed bytes first so the buffer never grows past one frame plus this chunk.
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(data, size);
  return check_header();
}

bool FrameDecoder::check_header() {
  if (buf_.size() - pos_ < kHeaderSize) return true;
  const char* h = buf_.data() + pos_;
  auto magic = static_cast<uint16_t>(get_le(h, 2));
  auto version = static_cast<uint8_t>(get_le(h + 2, 1));
  auto length = static_cast<uint32_t>(get_le(h + 4, 4));
  if (magic != kMagic) {
    error_ = "bad frame magic (the channel carried bytes that are not kiln protocol)";
  } else if (version != kFrameVersion) {
    error_ = "frame format " + std::to_string(version) + ", expected " + std::to_string(kFrameVersion) +
             " (agent and host come from different kiln builds)";
  } else if (length > kMaxPayload) {
    error_ = "frame of " + std::to_string(length) + " bytes exceeds the " + std::to_string(kMaxPayload) +
             "-byte limit";
  }
  return !failed();
}

bool FrameDecoder::has_frame() const {
  if (failed() || buf_.size() - pos_ < kHeaderSize) return false;
  auto length = static_cast<uint32_t>(get_le(buf_.data() + pos_ + 4, 4));
  return buf_.size() - pos_ >= kHeaderSize + length;
}

std::optional<Frame> FrameDecoder::next() {
  if (failed() || buf_.size() - pos_ < kHeaderSize) return std::nullopt;
  if (!check_header()) return std::nullopt;
  const char* h = buf_.data() + pos_;
  auto length = static_cast<uint32_t>(get_le(h + 4, 4));
  if (buf_.size() - pos_ < kHeaderSize + length) return std::nullopt;
  Frame f;
  f.type = static_cast<MsgType>(static_cast<uint8_t>(h[3]));
  f.payload.assign(h + kHeaderSize, length);
  pos_ += kHeaderSize + length;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  check_header();
  return f;
}

Writer& Writer::u8(uint8_t v) {
  put_le(out_, v, 1);
  return *this;
}
Writer& Writer::u32(uint32_t v) {
  put_le(out_, v, 4);
  return *this;
}
Writer& Writer::u64(uint64_t v) {
  put_le(out_, v, 8);
  return *this;
}
Writer& Writer::str(std::string_view s) {
  u32(static_cast<uint32_t>(s.size()));
  out_.append(s);
  return *this;
}
Writer& Writer::strs(const std::vector<std::string>& v) {
  u32(static_cast<uint32_t>(v.size()));
  for (const auto& s : v) str(s);
  return *this;
}

bool Reader::need(size_t n) {
  if (failed_ || in_.size() - pos_ < n) {
    failed_ = true;
    return false;
  }
  return true;
}
uint8_t Reader::u8() {
  if (!need(1)) return 0;
  return static_cast<uint8_t>(get_le(in_.data() + pos_++, 1));
}
uint32_t Reader::u32() {
  if (!need(4)) return 0;
  auto v = static_cast<uint32_t>(get_le(in_.data() + pos_, 4));
  pos_ += 4;
  return v;
}
uint64_t Reader::u64() {
  if (!need(8)) return 0;
  uint64_t v = get_le(in_.data() + pos_, 8);
  pos_ += 8;
  return v;
}
std::string Reader::str(size_t max_len) {
  uint32_t len = u32();
  if (len > max_len) failed_ = true;
  if (!need(len)) return {};
  std::string s(in_.substr(pos_, len));
  pos_ += len;
  return s;
}
std::vector<std::string> Reader::strs(uint32_t max_count) {
  uint32_t n = u32();
  // Each entry needs at least its 4-byte length, so a count larger than the rest is garbage.
  if (n > max_count || n > (in_.size() - pos_) / 4) failed_ = true;
  std::vector<std::string> v;
  if (failed_) return v;
  v.reserve(n);
  for (uint32_t i = 0; i < n && !failed_; ++i) v.push_back(str());
  return v;
}

std::string encode(const Hello& m) {
  return Writer().u32(m.protocol_version).str(m.agent_version).u32(m.min_protocol_version).u64(m.features).take();
}
std::string encode(const HelloAck& m) { return Writer().u32(m.protocol_version).u64(m.features).take(); }
std::string encode(const Sync& m) { return Writer().u64(m.realtime_ns).str(m.entropy).take(); }
std::string encode(const PutFile& m) { return Writer().str(m.path).u32(m.mode).u64(m.size).take(); }
std::string encode(const Symlink& m) { return Writer().str(m.path).str(m.target).take(); }
std::string encode(const Mkdir& m) { return Writer().str(m.path).u32(m.mode).take(); }
std::string encode(const Exec& m) {
  Writer w;
  w.strs(m.argv).strs(m.env).str(m.cwd).u8(static_cast<uint8_t>(m.stdin_mode));
  if (!m.user.empty()) w.str(m.user);
  return w.take();
}
std::string encode(const Exit& m) {
  Writer w;
  w.u8(m.signaled ? 1 : 0).i32(m.code).u64(m.stdout_bytes).u64(m.stderr_bytes).u32(m.oom_kills);
  if (m.coverage) w.u8(*m.coverage ? 1 : 0);
  return w.take();
}
std::string encode(const ExecFailed& m) { return Writer().i32(m.err).str(m.message).take(); }
std::string encode(const ErrorReply& m) { return Writer().str(m.message).take(); }
std::string encode(const StdinCredit& m) { return Writer().u32(m.bytes).take(); }
std::string encode(const WindowSize& m) { return Writer().u32(m.rows).u32(m.cols).take(); }
std::string encode(const Detached& m) { return Writer().u32(m.pid).take(); }
std::string encode(const Collect& m) { return Writer().str(m.dir).u64(m.max_bytes).take(); }
std::string encode(const Collected& m) {
  return Writer().u64(m.bytes).u32(m.entries).u32(m.left_out).str(m.note).take();
}
std::string encode(const Share& m) { return Writer().strs(m.roots).take(); }

template <typename T>
static std::optional<T> finish(const Reader& r, T value) {
  if (!r.done()) return std::nullopt;
  return value;
}

std::optional<Hello> decode_hello(std::string_view p) {
  Reader r(p);
  Hello m;
  m.protocol_version = r.u32();
  m.agent_version = r.str(kMaxAgentVersion);
  if (r.done()) {  // protocol 1 ended here
    m.min_protocol_version = m.protocol_version;
    m.features = 0;
    return m;
  }
  m.min_protocol_version = r.u32();
  m.features = r.u64();
  if (m.min_protocol_version > m.protocol_version) return std::nullopt;
  return finish(r, std::move(m));
}
std::optional<HelloAck> decode_hello_ack(std::string_view p) {
  Reader r(p);
  HelloAck m;
  m.protocol_version = r.u32();
  m.features = r.u64();
  return finish(r, m);
}
std::optional<Sync> decode_sync(std::string_view p) {
  Reader r(p);
  Sync m;
  m.realtime_ns = r.u64();
  m.entropy = r.str(kMaxEntropy);
  return finish(r, std::move(m));
}
std::optional<PutFile> decode_put_file(std::string_view p) {
  Reader r(p);
  PutFile m;
  m.path = r.str(4096);
  m.mode = r.u32();
  m.size = r.u64();
  if (!is_safe_guest_path(m.path) || (m.mode & ~07777u) != 0) return std::nullopt;
  return finish(r, std::move(m));
}
std::optional<Symlink> decode_symlink(std::string_view p) {
  Reader r(p);
  Symlink m;
  m.path = r.str(4096);
  m.target = r.str(4096);
  if (!is_safe_guest_path(m.path) || m.target.empty() || m.target.find('\0') != std::string::npos)
    return std::nullopt;
  return finish(r, std::move(m));
}
std::optional<Mkdir> decode_mkdir(std::string_view p) {
  Reader r(p);
  Mkdir m;
  m.path = r.str(4096);
  m.mode = r.u32();
  if (!is_safe_guest_path(m.path) || (m.mode & ~07777u) != 0) return std::nullopt;
  return finish(r, std::move(m));
}
std::optional<Exec> decode_exec(std::string_view p) {
  Reader r(p);
  Exec m;
  m.argv = r.strs(kMaxArgs);
  m.env = r.strs(kMaxArgs);
  m.cwd = r.str(4096);
  uint8_t stdin_mode = r.u8();
  if (stdin_mode > static_cast<uint8_t>(StdinMode::terminal)) return std::nullopt;
  m.stdin_mode = static_cast<StdinMode>(stdin_mode);
  if (r.more()) {
    m.user = r.str(kMaxUser);
    if (m.user.empty() || m.user.find('\0') != std::string::npos) return std::nullopt;
  }
  if (m.argv.empty()) return std::nullopt;
  for (const auto& s : m.argv)
    if (s.find('\0') != std::string::npos) return std::nullopt;
  for (const auto& s : m.env)
    if (s.find('\0') != std::string::npos || s.find('=') == std::string::npos) return std::nullopt;
  if (!m.cwd.empty() && !is_safe_guest_path(m.cwd)) return std::nullopt;
  return finish(r, std::move(m));
}
std::optional<Exit> decode_exit(std::string_view p) {
  Reader r(p);
  Exit m;
  uint8_t how = r.u8();
  m.code = r.i32();
  m.stdout_bytes = r.u64();
  m.stderr_bytes = r.u64();
  m.oom_kills = r.u32();
  if (r.more()) {
    const uint8_t coverage = r.u8();
    if (coverage > 1) return std::nullopt;
    m.coverage = coverage == 1;
  }
  if (how > 1) return std::nullopt;
  m.signaled = how == 1;
  if (m.signaled ? (m.code < 1 || m.code > 64) : (m.code < 0 || m.code > 255)) return std::nullopt;
  return finish(r, m);
}
std::optional<ExecFailed> decode_exec_failed(std::string_view p) {
  Reader r(p);
  ExecFailed m;
  m.err = r.i32();
  m.message = r.str(kMaxMessage);
  return finish(r, std::move(m));
}
std::optional<ErrorReply> decode_error(std::string_view p) {
  Reader r(p);
  ErrorReply m;
  m.message = r.str(kMaxMessage);
  return finish(r, std::move(m));
}
std::optional<StdinCredit> decode_stdin_credit(std::string_view p) {
  Reader r(p);
  StdinCredit m;
  m.bytes = r.u32();
  if (m.bytes == 0) return std::nullopt;
  return finish(r, m);
}
std::optional<Detached> decode_detached(std::string_view p) {
  Reader r(p);
  Detached m;
  m.pid = r.u32();
  if (m.pid < 2 || m.pid > (1u << 22)) return std::nullopt;  // PID_MAX_LIMIT; pid 1 is the agent
  return finish(r, m);
}
std::optional<WindowSize> decode_window_size(std::string_view p) {
  Reader r(p);
  const uint32_t rows = r.u32();
  const uint32_t cols = r.u32();
  if (rows > 0xffff || cols > 0xffff) return std::nullopt;
  return finish(r, WindowSize{static_cast<uint16_t>(rows), static_cast<uint16_t>(cols)});
}

std::optional<Share> decode_share(std::string_view p) {
  Reader r(p);
  Share m;
  m.roots = r.strs(kMaxShareRoots);
  if (m.roots.empty()) return std::nullopt;
  for (const auto& root : m.roots)
    if (!is_safe_guest_path(root)) return std::nullopt;
  return finish(r, std::move(m));
}
std::optional<Collect> decode_collect(std::string_view p) {
  Reader r(p);
  Collect m;
  m.dir = r.str(4096);
  m.max_bytes = r.u64();
  if (!is_safe_guest_path(m.dir)) return std::nullopt;
  return finish(r, std::move(m));
}
std::optional<Collected> decode_collected(std::string_view p) {
  Reader r(p);
  Collected m;
  m.bytes = r.u64();
  m.entries = r.u32();
  m.left_out = r.u32();
  m.note = r.str(kMaxMessage);
  return finish(r, std::move(m));
}

std::optional<uint32_t> common_version(uint32_t peer_min, uint32_t peer_max) {
  uint32_t newest = peer_max < kProtocolVersion ? peer_max : kProtocolVersion;
  uint32_t oldest = peer_min > kMinProtocolVersion ? peer_min : kMinProtocolVersion;
  if (newest < oldest) return std::nullopt;
  return newest;
}

std::string version_range(uint32_t min, uint32_t max) {
  return min == max ? std::to_string(max) : std::to_string(min) + "-" + std::to_string(max);
}

bool is_safe_guest_path(std::string_view path) {
  if (path.empty() || path.front() != '/' || path.size() > 4096) return false;
  if (path.find('\0') != std::string_view::npos) return false;
  size_t i = 1;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view comp = path.substr(i, j - i);
    if (comp == ".." || comp == ".") return false;
    if (comp.empty() && j != path.size()) return false;  // "//"
    i = j + 1;
  }
  return true;
}

}  // namespace kiln::proto
