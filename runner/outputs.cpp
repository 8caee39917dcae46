#include "runner/outputs.h"

#include "common/temp_file.h"
#include "common/unique_fd.h"
#include "image/rootfs/layer_reader.h"
#include "runner/guest_text.h"
#include "snapshot/sparse_io.h"

#include <archive_entry.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kiln::runner {
namespace {

namespace stdfs = std::filesystem;

// Headers, padding and the end blocks on top of the contents: 1 KiB per entry the agent
// may send, and slack.
constexpr uint64_t kStreamOverhead = uint64_t{proto::kMaxOutputEntries} * 1024 + (1u << 20);

// `path` as its components, or empty when it is absolute, empty, or has '.', '..' or
// empty components (a trailing '/' of a directory entry is allowed).
std::vector<std::string> checked_components(std::string_view path) {
  std::vector<std::string> parts;
  if (path.empty() || path.front() == '/') return {};
  if (path.back() == '/') path.remove_suffix(1);
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return {};
    parts.emplace_back(part);
    start = end + 1;
  }
  return parts;
}

class Extractor {
 public:
  Extractor(UniqueFd root, uint64_t cap) : root_(std::move(root)), cap_(cap) {}

  Result<void> entry(rootfs::LayerReader& reader, archive_entry* e);
  OutputsReport take() { return std::move(report_); }

 private:
  // The directory that holds `parts`' last component, made where missing; no component
  // may be a symlink (O_NOFOLLOW) or anything but a directory.
  UniqueFd parent_of(const std::vector<std::string>& parts);
  Result<void> write_file(rootfs::LayerReader& reader, int dir, const std::string& name, const std::string& shown,
                          uint64_t size, mode_t mode);
  void leave_out(const std::string& path, std::string_view why);

  UniqueFd root_;
  uint64_t cap_;
  OutputsReport report_;
};

void Extractor::leave_out(const std::string& path, std::string_view why) {
  ++report_.left_out;
  if (report_.note.size() < 2048) report_.note += fmt::format("{}{} ({})", report_.note.empty() ? "" : "; ", path, why);
}

UniqueFd Extractor::parent_of(const std::vector<std::string>& parts) {
  UniqueFd dir(::dup(root_.get()));
  for (size_t i = 0; i + 1 < parts.size() && dir; ++i) {
    const char* name = parts[i].c_str();
    if (::mkdirat(dir.get(), name, 0755) != 0 && errno != EEXIST) return UniqueFd();
    dir = UniqueFd(::openat(dir.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  return dir;
}

Result<void> Extractor::write_file(rootfs::LayerReader& reader, int dir, const std::string& name,
                                   const std::string& shown, uint64_t size, mode_t mode) {
  if (size > cap_ - report_.bytes) {
    leave_out(shown, fmt::format("{} bytes: over the outputs cap", size));
    return {};
  }
  // O_EXCL | O_NOFOLLOW: never over an entry already there, never through a symlink.
  UniqueFd out(::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode & 0777) | 0600));
  if (!out) {
    leave_out(shown, std::strerror(errno));
    return {};
  }
  std::vector<char> buf(256 << 10);
  uint64_t done = 0;
  for (;;) {
    KILN_ASSIGN_OR_RETURN(size_t n, reader.read_data(buf.data(), buf.size()));
    if (n == 0) break;
    if (n > size - done) return make_error("the guest's outputs stream holds more bytes for {} than its header says", shown);
    KILN_TRY(snapshot::sparse::write_exact(out.get(), buf.data(), n, done, shown));
    done += n;
  }
  report_.bytes += done;
  ++report_.entries;
  return {};
}

Result<void> Extractor::entry(rootfs::LayerReader& reader, archive_entry* e) {
  const char* raw = archive_entry_pathname(e);
  const std::string path = raw ? raw : "";
  const std::string shown = escape_guest_text(path);
  const std::vector<std::string> parts = checked_components(path);
  if (parts.empty()) {
    leave_out(shown, "not a plain relative path");
    return {};
  }
  const auto type = archive_entry_filetype(e);
  if (archive_entry_hardlink(e) != nullptr || (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)) {
    leave_out(shown, "not a regular file, directory or symlink");
    return {};
  }
  UniqueFd dir = parent_of(parts);
  if (!dir) {
    leave_out(shown, "a directory on its path is not one (or a symlink)");
    return {};
  }
  const std::string& name = parts.back();
  if (type == AE_IFDIR) {
    if (::mkdirat(dir.get(), name.c_str(), 0755) == 0) ++report_.entries;
    return {};
  }
  if (type == AE_IFLNK) {
    const char* target = archive_entry_symlink(e);
    if (!target || ::symlinkat(target, dir.get(), name.c_str()) != 0) {
      leave_out(shown, "cannot be made as a symlink");
      return {};
    }
    ++report_.entries;
    return {};
  }
  const int64_t size = archive_entry_size(e);
  return write_file(reader, dir.get(), name, shown, size < 0 ? 0 : static_cast<uint64_t>(size),
                    archive_entry_perm(e));
}

// Receive the agent's output_data frames into `tar` until its collected frame.
Result<proto::Collected> receive_stream(AgentClient& agent, Deadline deadline, fs::TempFile& tar, uint64_t bound) {
  uint64_t received = 0;
  for (;;) {
    KILN_ASSIGN_OR_RETURN(proto::Frame frame, agent.next_frame(deadline));
    switch (frame.type) {
      case proto::MsgType::output_data:
        received += frame.payload.size();
        if (received > bound)
          return make_error("the guest sent more than {} bytes of outputs for a cap of less", bound);
        KILN_TRY(tar.write(frame.payload));
        break;
      case proto::MsgType::collected: {
        auto done = proto::decode_collected(frame.payload);
        if (!done) return make_error("the guest agent sent a malformed collected frame");
        return *done;
      }
      case proto::MsgType::error: {
        auto err = proto::decode_error(frame.payload);
        return make_error("the guest agent could not send the outputs: {}",
                          err ? escape_guest_text(err->message) : std::string("(malformed error)"));
      }
      default:
        return make_error("the guest agent sent a {} frame while sending the outputs", proto::type_name(frame.type));
    }
  }
}

}  // namespace

Result<void> prepare_output_dir(const stdfs::path& dir) {
  std::error_code ec;
  const auto status = stdfs::symlink_status(dir, ec);
  if (!stdfs::exists(status)) {
    stdfs::create_directories(dir, ec);
    if (ec) return make_error("cannot create the output directory {}: {}", dir.string(), ec.message());
  } else if (!stdfs::is_directory(status)) {
    return make_error("the output directory {} is not a directory", dir.string());
  } else if (!stdfs::exists(dir / kOutputDirMarker, ec)) {
    if (!stdfs::is_empty(dir, ec))
      return make_error("the output directory {} is not empty and kiln did not make it (no {} in it): kiln empties "
                        "its output directory at the start of every run, so name a new or empty one",
                        dir.string(), kOutputDirMarker);
  } else {
    for (const auto& entry : stdfs::directory_iterator(dir, ec)) {
      if (entry.path().filename() == kOutputDirMarker) continue;
      stdfs::remove_all(entry.path(), ec);  // a symlink goes, its target stays
      if (ec) return make_error("cannot empty the output directory {}: {}", dir.string(), ec.message());
    }
  }
  if (ec) return make_error("cannot read the output directory {}: {}", dir.string(), ec.message());
  if (!stdfs::exists(dir / kOutputDirMarker, ec)) {
    auto marker = fs::create_new_file(dir / kOutputDirMarker, 0644);
    if (!marker) return marker.take_error();
  }
  return {};
}

Result<OutputsReport> extract_outputs(const stdfs::path& tar, const stdfs::path& dir, uint64_t cap_bytes) {
  UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return make_error("cannot open the output directory {}: {}", dir.string(), std::strerror(errno));
  KILN_ASSIGN_OR_RETURN(auto reader, rootfs::LayerReader::open_file(tar, "the guest's outputs"));
  Extractor out(std::move(root), cap_bytes);
  for (;;) {
    KILN_ASSIGN_OR_RETURN(archive_entry * e, reader.next());
    if (!e) break;
    KILN_TRY(out.entry(reader, e));
  }
  return out.take();
}

Result<OutputsReport> collect_tree(AgentClient& agent, Deadline deadline, const std::string& guest_dir,
                                   const stdfs::path& host_dir, uint64_t cap_bytes) {
  KILN_ASSIGN_OR_RETURN(auto tar, fs::TempFile::beside(host_dir));
  agent.send(proto::MsgType::collect, proto::encode(proto::Collect{guest_dir, cap_bytes}));
  KILN_ASSIGN_OR_RETURN(proto::Collected sent, receive_stream(agent, deadline, tar, cap_bytes + kStreamOverhead));
  KILN_ASSIGN_OR_RETURN(OutputsReport report, extract_outputs(tar.path(), host_dir, cap_bytes));
  // What the guest left out, then what the host did.
  if (sent.left_out > 0) {
    report.left_out += sent.left_out;
    report.note = escape_guest_text(sent.note) + (report.note.empty() ? "" : "; " + report.note);
  }
  return report;
}

}  // namespace kiln::runner
