#include "share/open_handles.h"

#include <algorithm>
#include <cerrno>

namespace kiln::share {

ErrnoOr<uint64_t> OpenHandles::add(Handle handle) {
  if (handles_.size() >= max_) return Errno{ENFILE};
  const uint64_t fh = next_fh_++;
  handles_.emplace(fh, std::move(handle));
  return fh;
}

OpenHandles::Handle* OpenHandles::find(uint64_t fh, uint64_t nodeid) {
  const auto it = handles_.find(fh);
  if (it == handles_.end() || it->second.nodeid != nodeid) return nullptr;
  return &it->second;
}

bool OpenHandles::remove(uint64_t fh, uint64_t nodeid, bool directory) {
  const Handle* h = find(fh, nodeid);
  if (h == nullptr || (h->kind != Kind::file) != directory) return false;
  handles_.erase(fh);
  return true;
}

std::vector<OpenHandles::SavedHandle> OpenHandles::saved() const {
  std::vector<SavedHandle> out;
  for (const auto& [fh, h] : handles_) out.push_back({fh, h.kind, h.nodeid});
  return out;
}

bool OpenHandles::adopt(const SavedHandle& saved, UniqueFd fd) {
  if (saved.fh == 0 || handles_.size() >= max_ || handles_.count(saved.fh)) return false;
  next_fh_ = std::max(next_fh_, saved.fh + 1);
  handles_.emplace(saved.fh, Handle{saved.kind, saved.nodeid, std::move(fd)});
  return true;
}

}  // namespace kiln::share
