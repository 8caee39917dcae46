#include "snapshot/memory_diff.h"

#include "common/temp_file.h"
#include "common/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace kiln::snapshot {
namespace {

constexpr uint64_t kBlock = 1 << 20;

// Appends changed pages to the pages file: runs of non-zero pages in one pwrite, zero
// pages as holes (the file is extended to its full size at the end).
class PageWriter {
 public:
  PageWriter(int fd, const std::filesystem::path& name, DiffIndex& index, DiffStats& stats)
      : fd_(fd), name_(name), index_(index), stats_(stats) {}

  Result<void> add(uint64_t guest_offset, const char* page) {
    bool zero = sparse::all_zero(page, kPageSize);
    uint64_t file_offset = index_.pages_bytes;
    append_extent(index_, guest_offset, kPageSize);
    if (zero) {
      ++stats_.zeroed_pages;
      return flush();
    }
    ++stats_.stored_pages;
    if (run_len_ != 0 && (run_file_ + run_len_ != file_offset || run_src_ + run_len_ != page)) KILN_TRY(flush());
    if (run_len_ == 0) {
      run_src_ = page;
      run_file_ = file_offset;
    }
    run_len_ += kPageSize;
    return {};
  }
  /// Write the pending run; call before the block buffer is reused.
  Result<void> flush() {
    if (run_len_ == 0) return {};
    KILN_TRY(sparse::write_exact(fd_, run_src_, run_len_, run_file_, name_));
    run_len_ = 0;
    return {};
  }

 private:
  int fd_;
  const std::filesystem::path& name_;
  DiffIndex& index_;
  DiffStats& stats_;
  const char* run_src_ = nullptr;
  uint64_t run_file_ = 0;
  size_t run_len_ = 0;
};

}  // namespace

Result<DiffIndex> write_memory_diff(const std::filesystem::path& image, const MemoryView& base,
                                    const std::filesystem::path& pages_path, DiffStats* stats_out) {
  UniqueFd in(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return make_error("cannot open the saved memory {}: {}", image.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return make_error("the saved memory {} is not a regular file", image.string());
  if (static_cast<uint64_t>(st.st_size) != base.size())
    return make_error("the saved memory {} is {} bytes, but its base has {}; the engine did not save a complete image",
                      image.string(), st.st_size, base.size());
  KILN_ASSIGN_OR_RETURN(UniqueFd out, fs::create_new_file(pages_path, 0644));

  KILN_ASSIGN_OR_RETURN(auto ranges, sparse::data_extents(in.get(), base.size(), image));
  ranges.insert(ranges.end(), base.data().begin(), base.data().end());
  ranges = sparse::merge(std::move(ranges), kPageSize);

  DiffIndex index;
  index.memory_size = base.size();
  DiffStats stats;
  PageWriter writer(out.get(), pages_path, index, stats);
  std::vector<char> mine(kBlock), theirs(kBlock);
  for (const auto& r : ranges) {
    for (uint64_t pos = r.begin; pos < r.end; pos += kBlock) {
      size_t len = static_cast<size_t>(std::min(kBlock, r.end - pos));
      KILN_TRY(sparse::read_exact(in.get(), mine.data(), len, pos, image));
      KILN_TRY(base.read(pos, theirs.data(), len));
      stats.scanned_bytes += len;
      if (std::memcmp(mine.data(), theirs.data(), len) == 0) continue;
      for (size_t p = 0; p < len; p += kPageSize)
        if (std::memcmp(mine.data() + p, theirs.data() + p, kPageSize) != 0)
          KILN_TRY(writer.add(pos + p, mine.data() + p));
      KILN_TRY(writer.flush());
    }
  }
  // Trailing zero pages are holes past the last write: give the file its full size.
  if (::ftruncate(out.get(), static_cast<off_t>(index.pages_bytes)) != 0)
    return make_error("cannot size {}: {}", pages_path.string(), std::strerror(errno));
  if (stats_out) *stats_out = stats;
  return index;
}

namespace {

// Each layer's pages over the root content already in `out_fd`, root -> leaf. With
// `reflink`, runs of data pages are cloned from the layer's pages file (FICLONERANGE), so
// the flat file and memory.diff share them on disk; written where that fails.
Result<void> apply_layers(const LayerChain& chain, int out_fd, const std::filesystem::path& out_path, bool reflink) {
  std::vector<char> buf(kBlock);
  for (const auto& layer : chain.layers) {
    auto pages_path = layer.pages();
    UniqueFd pages(::open(pages_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!pages) return make_error("cannot open {}: {}", pages_path.string(), std::strerror(errno));
    for (const auto& e : layer.index.extents) {
      for (uint64_t done = 0; done < e.length; done += kBlock) {
        size_t len = static_cast<size_t>(std::min(kBlock, e.length - done));
        KILN_TRY(sparse::read_exact(pages.get(), buf.data(), len, e.file_offset + done, pages_path));
        // Runs of zero pages become holes; runs of data pages one pwrite each.
        size_t p = 0;
        while (p < len) {
          bool zero = sparse::all_zero(buf.data() + p, kPageSize);
          size_t q = p + kPageSize;
          while (q < len && sparse::all_zero(buf.data() + q, kPageSize) == zero) q += kPageSize;
          uint64_t at = e.guest_offset + done + p;
          if (zero) {
            KILN_TRY(sparse::zero_range(out_fd, at, q - p, out_path));
          } else {
            bool cloned = false;
            if (reflink) {
              KILN_ASSIGN_OR_RETURN(cloned, sparse::clone_range(pages.get(), e.file_offset + done + p, out_fd, at,
                                                                q - p, pages_path));
            }
            if (!cloned) KILN_TRY(sparse::write_exact(out_fd, buf.data() + p, q - p, at, out_path));
          }
          p = q;
        }
      }
    }
  }
  // No fsync: a flat file is derived data whose digest is re-checked after every host
  // boot (digest_stamp.h), so one torn by a crash is rebuilt, never restored.
  return {};
}

// The chain's content into `out_fd`: the root cloned where the filesystem can (then the
// layers' pages cloned too), else — when `may_copy` — the root's data extents copied in
// the kernel. False, with nothing written, when it could not clone and may not copy.
Result<bool> write_flat(const LayerChain& chain, int out_fd, const std::filesystem::path& out_path, bool may_copy) {
  const auto root_path = chain.root_memory();
  UniqueFd root(::open(root_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!root) return make_error("cannot open {}: {}", root_path.string(), std::strerror(errno));
  KILN_ASSIGN_OR_RETURN(bool cloned, sparse::clone_file(root.get(), out_fd, root_path));
  if (!cloned && !may_copy) return false;
  if (::ftruncate(out_fd, static_cast<off_t>(chain.memory_size())) != 0)
    return make_error("cannot size {}: {}", out_path.string(), std::strerror(errno));
  if (!cloned) {
    KILN_ASSIGN_OR_RETURN(auto data, sparse::data_extents(root.get(), chain.memory_size(), root_path));
    for (const auto& r : data) KILN_TRY(sparse::copy_range(root.get(), out_fd, r, root_path));
  }
  KILN_TRY(apply_layers(chain, out_fd, out_path, /*reflink=*/cloned));
  return true;
}

}  // namespace

Result<bool> write_shared_flat_image(const LayerChain& chain, int out_fd, const std::filesystem::path& out_path) {
  return write_flat(chain, out_fd, out_path, /*may_copy=*/false);
}

Result<void> write_flat_image(const LayerChain& chain, int out_fd, const std::filesystem::path& out_path) {
  KILN_TRY(write_flat(chain, out_fd, out_path, /*may_copy=*/true));
  return {};
}

}  // namespace kiln::snapshot
