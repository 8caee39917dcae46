#include "vmm/kvm/guest_memory.h"

#include "common/unique_fd.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

namespace kiln::vmm::kvm {
namespace {

std::string errno_text() { return std::strerror(errno); }

bool page_aligned(uint64_t v) { return v % kPageSize == 0; }

// [offset, offset+length) inside [0, limit), without computing offset+length (it may wrap).
bool range_inside(uint64_t offset, uint64_t length, uint64_t limit) {
  return length <= limit && offset <= limit - length;
}

Result<void> check_size(uint64_t size) {
  // off_t is signed: a larger size could not be ftruncate'd or mapped from a file anyway.
  if (size == 0 || !page_aligned(size) ||
      size > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
    return make_error("guest memory size {} is not a positive multiple of {} bytes", size, kPageSize);
  return {};
}

// Unmaps a half-built mapping on every early return.
class MappingGuard {
 public:
  MappingGuard(uint8_t* p, uint64_t n) : p_(p), n_(n) {}
  MappingGuard(const MappingGuard&) = delete;
  MappingGuard& operator=(const MappingGuard&) = delete;
  ~MappingGuard() {
    if (p_) ::munmap(p_, n_);
  }
  uint8_t* release() { return std::exchange(p_, nullptr); }

 private:
  uint8_t* p_;
  uint64_t n_;
};

Result<struct stat> stat_fd(int fd, const std::filesystem::path& path) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return make_error("cannot stat {}: {}", path.string(), errno_text());
  if (!S_ISREG(st.st_mode)) return make_error("{} is not a regular file", path.string());
  return st;
}

// Every extent must be a whole number of pages inside guest RAM and inside the layer
// file, sorted and disjoint: the layer file comes from disk and is untrusted.
Result<void> validate_overlay(const MemoryOverlay& overlay, uint64_t guest_size, uint64_t file_size) {
  uint64_t previous_end = 0;
  for (size_t i = 0; i < overlay.extents.size(); ++i) {
    const MemoryExtent& e = overlay.extents[i];
    auto bad = [&](std::string_view why) {
      return make_error("memory layer {}: extent {} (guest 0x{:x}, file 0x{:x}, length 0x{:x}) {}; "
                        "the snapshot is corrupt: rebake it",
                        overlay.file.string(), i, e.guest_offset, e.file_offset, e.length, why);
    };
    if (e.length == 0) return bad("is empty");
    if (!page_aligned(e.guest_offset) || !page_aligned(e.file_offset) || !page_aligned(e.length))
      return bad(fmt::format("is not aligned to {} bytes", kPageSize));
    if (!range_inside(e.guest_offset, e.length, guest_size))
      return bad(fmt::format("runs past the end of guest RAM ({} bytes)", guest_size));
    if (!range_inside(e.file_offset, e.length, file_size))
      return bad(fmt::format("runs past the end of the layer file ({} bytes)", file_size));
    if (i > 0 && e.guest_offset < previous_end)
      return bad("overlaps or is not sorted after the previous extent");
    previous_end = e.guest_offset + e.length;
  }
  return {};
}

Result<void> write_all(int fd, const uint8_t* data, uint64_t len, uint64_t offset,
                       const std::filesystem::path& path) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, data, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error("cannot write {}: {}", path.string(), n < 0 ? errno_text() : "no progress");
    data += n;
    len -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

bool is_zero_page(const uint8_t* page) {
  alignas(64) static const uint8_t zeros[kPageSize] = {};
  return std::memcmp(page, zeros, kPageSize) == 0;
}

}  // namespace

Result<GuestMemory> GuestMemory::create_shared(const std::filesystem::path& file, uint64_t size) {
  KILN_TRY(check_size(size));
  UniqueFd fd(::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return make_error("cannot create guest memory file {}: {}", file.string(), errno_text());
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
    return make_error("cannot size guest memory file {} to {} bytes: {}", file.string(), size, errno_text());
  KILN_ASSIGN_OR_RETURN(struct stat st, stat_fd(fd.get(), file));
  // NORESERVE: RAM is committed page by page as the guest touches it.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd.get(), 0);
  if (p == MAP_FAILED) return make_error("cannot map guest memory file {}: {}", file.string(), errno_text());
  GuestMemory mem(static_cast<uint8_t*>(p), size, true);
  mem.backing_files_.emplace_back(st.st_dev, st.st_ino);
  return mem;
}

namespace {

// Holes at least this long get anonymous memory (fewer, larger mappings; the small
// ones left are rarely touched by anything but the guest itself).
constexpr uint64_t kMinAnonymousHole = 64 * 1024;

// A private mapping of a tmpfs file still allocates a tmpfs page when the guest first
// touches a hole, so a full tmpfs turns those touches into SIGBUS (in the VMM) or
// EFAULT (in KVM_RUN). Map the file's large holes as anonymous zero memory instead:
// same contents, no allocation in the store's filesystem. An overlayfs maps its upper
// layer's file, and that is tmpfs in the nested-KVM lab (and in containers whose
// writable layer lives in RAM), so overlays get the same treatment. Disk filesystems
// allocate no blocks for a hole a private mapping touches: nothing to do there.
Result<void> map_holes_anonymous(int fd, uint8_t* base, uint64_t size) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0 || (fs.f_type != TMPFS_MAGIC && fs.f_type != OVERLAYFS_SUPER_MAGIC)) return {};
  off_t at = 0;
  while (static_cast<uint64_t>(at) < size) {
    const off_t hole = ::lseek(fd, at, SEEK_HOLE);
    if (hole < 0 || static_cast<uint64_t>(hole) >= size) break;
    off_t data = ::lseek(fd, hole, SEEK_DATA);
    if (data < 0 || static_cast<uint64_t>(data) > size) data = static_cast<off_t>(size);  // ENXIO: a hole to the end
    const uint64_t from = (static_cast<uint64_t>(hole) + kPageSize - 1) & ~(kPageSize - 1);
    const uint64_t to = static_cast<uint64_t>(data) & ~(kPageSize - 1);
    if (to > from && to - from >= kMinAnonymousHole &&
        ::mmap(base + from, to - from, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
               -1, 0) == MAP_FAILED)
      return make_error("cannot map a hole of the guest memory file as anonymous memory: {}", errno_text());
    at = data;
  }
  return {};
}

}  // namespace

Result<GuestMemory> GuestMemory::map_private(const std::filesystem::path& base, uint64_t size,
                                             std::span<const MemoryOverlay> overlays) {
  KILN_TRY(check_size(size));
  UniqueFd fd(::open(base.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error("cannot open guest memory file {}: {}", base.string(), errno_text());
  KILN_ASSIGN_OR_RETURN(struct stat st, stat_fd(fd.get(), base));
  // A shorter file would SIGBUS the VMM when the guest touches the missing tail.
  if (static_cast<uint64_t>(st.st_size) != size)
    return make_error("guest memory file {} has {} bytes where the snapshot says {}; rebake the snapshot",
                      base.string(), st.st_size, size);
  // PRIVATE: copy-on-write, so the golden file is never modified and its page cache is
  // shared by every VM restored from it.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd.get(), 0);
  if (p == MAP_FAILED) return make_error("cannot map guest memory file {}: {}", base.string(), errno_text());
  MappingGuard guard(static_cast<uint8_t*>(p), size);
  KILN_TRY(map_holes_anonymous(fd.get(), static_cast<uint8_t*>(p), size));
  std::vector<FileId> backing{{st.st_dev, st.st_ino}};

  for (const MemoryOverlay& overlay : overlays) {
    UniqueFd ofd(::open(overlay.file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ofd) return make_error("cannot open memory layer {}: {}", overlay.file.string(), errno_text());
    KILN_ASSIGN_OR_RETURN(struct stat ost, stat_fd(ofd.get(), overlay.file));
    KILN_TRY(validate_overlay(overlay, size, static_cast<uint64_t>(ost.st_size)));
    for (const MemoryExtent& e : overlay.extents) {
      // In bounds: validate_overlay checked guest_offset+length <= size and alignment.
      void* at = static_cast<uint8_t*>(p) + e.guest_offset;
      void* q = ::mmap(at, e.length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED,
                       ofd.get(), static_cast<off_t>(e.file_offset));
      if (q == MAP_FAILED)
        return make_error("cannot map memory layer {} at guest 0x{:x}: {} (many small extents can exceed "
                          "vm.max_map_count)",
                          overlay.file.string(), e.guest_offset, errno_text());
    }
    backing.emplace_back(ost.st_dev, ost.st_ino);
  }
  GuestMemory mem(guard.release(), size, false);
  mem.backing_files_ = std::move(backing);
  return mem;
}

Result<GuestMemory> GuestMemory::anonymous(uint64_t size) {
  KILN_TRY(check_size(size));
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return make_error("cannot map {} bytes of anonymous guest memory: {}", size, errno_text());
  return GuestMemory(static_cast<uint8_t*>(p), size, false);
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      shared_(std::exchange(other.shared_, false)),
      backing_files_(std::move(other.backing_files_)) {}

GuestMemory& GuestMemory::operator=(GuestMemory&& other) noexcept {
  if (this != &other) {
    if (base_) ::munmap(base_, size_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    shared_ = std::exchange(other.shared_, false);
    backing_files_ = std::move(other.backing_files_);
  }
  return *this;
}

GuestMemory::~GuestMemory() {
  if (base_) ::munmap(base_, size_);
}

std::optional<std::span<uint8_t>> GuestMemory::slice(uint64_t gpa, uint64_t len) const {
  if (!range_inside(gpa, len, size_)) return std::nullopt;
  // In bounds: range_inside checked gpa+len <= size_ without overflow.
  return std::span<uint8_t>(base_ + gpa, len);
}

bool GuestMemory::read(uint64_t gpa, void* dst, size_t len) const {
  auto s = slice(gpa, len);
  if (!s) return false;
  if (len > 0) std::memcpy(dst, s->data(), len);
  return true;
}

bool GuestMemory::write(uint64_t gpa, const void* src, size_t len) const {
  auto s = slice(gpa, len);
  if (!s) return false;
  if (len > 0) std::memcpy(s->data(), src, len);
  return true;
}

Result<void> GuestMemory::save_to(const std::filesystem::path& file) const {
  if (!base_) return make_error("cannot save guest memory to {}: the memory was moved from", file.string());
  // Not O_TRUNC yet: first make sure `file` is not one this memory is mapped from.
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return make_error("cannot create {}: {}", file.string(), errno_text());
  KILN_ASSIGN_OR_RETURN(struct stat st, stat_fd(fd.get(), file));
  if (std::find(backing_files_.begin(), backing_files_.end(), FileId{st.st_dev, st.st_ino}) !=
      backing_files_.end())
    return make_error("cannot save guest memory to {}: the memory is mapped from that file", file.string());
  if (::ftruncate(fd.get(), 0) != 0) return make_error("cannot truncate {}: {}", file.string(), errno_text());

  // Write runs of non-zero pages; zero pages stay holes in the fresh file.
  uint64_t page = 0;
  while (page < size_) {
    if (is_zero_page(base_ + page)) {
      page += kPageSize;
      continue;
    }
    uint64_t run_end = page + kPageSize;
    while (run_end < size_ && !is_zero_page(base_ + run_end)) run_end += kPageSize;
    // In bounds: size_ is a page multiple, so every page start < size_ has a full page.
    KILN_TRY(write_all(fd.get(), base_ + page, run_end - page, page, file));
    page = run_end;
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(size_)) != 0)
    return make_error("cannot size {} to {} bytes: {}", file.string(), size_, errno_text());
  return {};
}

}  // namespace kiln::vmm::kvm
