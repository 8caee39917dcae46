// SHA-256 as OCI digests use it ("sha256:<64 hex>"). The security-relevant digest
// in kiln: a blob from a registry or an image file is trusted only after its bytes
// hash to the digest its manifest names. (common/digest.h's XXH3 detects change, not forgery.)
#pragma once

#include "common/result.h"

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace kiln {

/// "sha256:<hex>" of a byte string.
std::string sha256_digest(std::string_view bytes);

/// Incremental SHA-256: feed bytes as they arrive (a download), read the digest at the end.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(Sha256Stream&&) noexcept;
  Sha256Stream& operator=(Sha256Stream&&) noexcept;
  void update(std::string_view bytes);
  /// "sha256:<hex>" of everything fed so far; update() may continue after it.
  std::string digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// "sha256:<hex>" of a whole file, streamed.
Result<std::string> sha256_file(const std::filesystem::path& path);

/// True if `digest` is "sha256:" followed by exactly 64 lowercase hex digits.
bool is_sha256_digest(std::string_view digest);

}  // namespace kiln
