// Exclusive advisory file locks (flock) that serialize baking one snapshot key
// across kiln processes.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <functional>
#include <optional>

namespace kiln::snapshot {

/// Holds flock(LOCK_EX) on a lock file; released (fd closed) on destruction.
/// The lock belongs to the open file description, so two threads of one process
/// that each acquire it exclude each other just like two processes do.
/// Lock files are never unlinked by a holder-less process: gc unlinks one only
/// while holding it, and acquirers re-check that the file they locked is still
/// the one at the path, so an unlinked lock can never be held by two owners.
class BakeLock {
 public:
  /// Block until the lock at `path` is ours (creating the file if needed). If another
  /// process holds it, call `on_wait` once before blocking, so the CLI can say why it
  /// waits. A signal that interrupts the wait (kiln's SIGINT/SIGTERM handlers do not
  /// restart) returns an error of kind `interrupted`.
  static Result<BakeLock> acquire(const std::filesystem::path& path, const std::function<void()>& on_wait);

  /// Take the lock only if nobody holds it: nullopt when it is busy. An error only
  /// when the lock file cannot be opened or created (its directory must exist).
  static Result<std::optional<BakeLock>> try_acquire(const std::filesystem::path& path);

  BakeLock(BakeLock&& other) noexcept;
  BakeLock& operator=(BakeLock&& other) noexcept;
  BakeLock(const BakeLock&) = delete;
  BakeLock& operator=(const BakeLock&) = delete;
  ~BakeLock();

  const std::filesystem::path& path() const { return path_; }

  /// Unlink the lock file while still holding it (gc of locks whose snapshot is gone).
  void unlink_file();

  /// Also hold a shared lock on the lock file at `path` until this lock dies (blocking
  /// while someone holds it exclusively). Building a layer pins its parent this way: gc
  /// and rm remove only what they can lock exclusively, so the parent stays.
  Result<void> pin_shared(const std::filesystem::path& path);

 private:
  BakeLock(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  int pin_fd_ = -1;
  std::filesystem::path path_;
};

}  // namespace kiln::snapshot
