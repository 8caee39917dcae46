#include "agent/guest_sync.h"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <time.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "agent/fs_util.h"
#include "agent/log.h"
#include "common/unique_fd.h"

namespace kiln::agent {

namespace {

Status set_clock(uint64_t realtime_ns) {
  if (realtime_ns == 0) return Status::ok();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(realtime_ns / 1'000'000'000u);
  ts.tv_nsec = static_cast<long>(realtime_ns % 1'000'000'000u);
  if (::clock_settime(CLOCK_REALTIME, &ts) != 0) return Status::fail(sys_error("cannot set the guest clock"));
  return Status::ok();
}

Status add_entropy(const std::string& bytes) {
  if (bytes.empty()) return Status::ok();
  UniqueFd fd(::open("/dev/urandom", O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::fail(sys_error("cannot open /dev/urandom"));
  // A plain write mixes the bytes in without crediting them; kept as the fallback
  // that still works if the ioctls below are refused.
  Status s = write_all(fd.get(), bytes.data(), bytes.size(), "/dev/urandom");
  if (!s.is_ok()) return s;

  // rand_pool_info ends in a flexible u32 array: build it in u32-aligned storage.
  std::vector<uint32_t> storage(2 + (bytes.size() + 3) / 4);
  // SAFETY: storage is u32-aligned and holds the two int header fields plus buf_size bytes.
  auto* info = reinterpret_cast<rand_pool_info*>(storage.data());
  info->entropy_count = static_cast<int>(bytes.size() * 8);
  info->buf_size = static_cast<int>(bytes.size());
  std::memcpy(info->buf, bytes.data(), bytes.size());
  if (::ioctl(fd.get(), RNDADDENTROPY, info) != 0) return Status::fail(sys_error("RNDADDENTROPY"));
  // Crediting alone does not rekey an already-initialised crng (that happens on
  // a timer, up to a minute later); force it so the very next getrandom differs.
  if (::ioctl(fd.get(), RNDRESEEDCRNG) != 0) return Status::fail(sys_error("RNDRESEEDCRNG"));
  return Status::ok();
}

}  // namespace

Status apply_sync(const proto::Sync& sync) {
  Status s = set_clock(sync.realtime_ns);
  if (!s.is_ok()) return s;
  return add_entropy(sync.entropy);
}

}  // namespace kiln::agent
