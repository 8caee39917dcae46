// The deterministic output of `vm_probe streams` (the guest writes it) and what
// output_stress_test.cpp expects `kiln run` to print: each stream's bytes and the
// sizes of the writes that carry them follow from (seed, stream) alone, so both
// sides agree without sharing anything but the seed. The bytes are pseudo-random,
// so a lost, repeated or reordered piece shows at its offset.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>

namespace kiln::vmtest {

/// splitmix64: small, fast, and every seed gives its own sequence.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

/// One stream (1 = stdout, 2 = stderr) of one seed: its content and its write sizes.
class OutputPattern {
 public:
  OutputPattern(uint64_t seed, int stream)
      : bytes_(seed * 4 + static_cast<uint64_t>(stream)), sizes_(~(seed * 4 + static_cast<uint64_t>(stream))) {}

  /// The next `n` bytes of the stream, appended to `out`.
  void append(std::string& out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (left_ == 0) {
        word_ = bytes_.next();
        left_ = 8;
      }
      out.push_back(static_cast<char>(word_ & 0xff));
      word_ >>= 8;
      --left_;
    }
  }

  /// The size of the next write, at most `max_write`: a quarter are 1 byte, the rest
  /// spread evenly over the powers of two up to `max_write`, so small and large
  /// (larger than a pipe, with max_write above 64 KiB) writes both occur.
  size_t next_write_size(size_t max_write) {
    const uint64_t r = sizes_.next();
    if (max_write <= 1 || r % 4 == 0) return 1;
    int top = 0;  // floor(log2(max_write))
    while ((size_t{2} << top) <= max_write) ++top;
    const size_t low = size_t{1} << (1 + (r >> 8) % static_cast<uint64_t>(top));
    const size_t high = std::min(max_write, 2 * low - 1);
    return low + static_cast<size_t>((r >> 32) % (high - low + 1));
  }

 private:
  SplitMix64 bytes_;
  SplitMix64 sizes_;
  uint64_t word_ = 0;
  int left_ = 0;
};

/// The whole of one stream, as the test expects it.
inline std::string expected_output(uint64_t seed, int stream, size_t total) {
  std::string out;
  out.reserve(total);
  OutputPattern(seed, stream).append(out, total);
  return out;
}

/// The guest side: write stream `fd`'s `total` bytes to fd in its write sizes.
inline bool write_stream(uint64_t seed, int fd, size_t total, size_t max_write) {
  OutputPattern pattern(seed, fd);
  std::string buf;
  for (size_t done = 0; done < total;) {
    const size_t n = std::min(pattern.next_write_size(max_write), total - done);
    buf.clear();
    pattern.append(buf, n);
    for (size_t off = 0; off < n;) {
      const ssize_t w = ::write(fd, buf.data() + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      off += static_cast<size_t>(w);
    }
    done += n;
  }
  return true;
}

}  // namespace kiln::vmtest
