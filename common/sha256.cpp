#include "common/sha256.h"

#include "common/unique_fd.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace kiln {

namespace {

std::string hex(const unsigned char* bytes, unsigned length) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned i = 0; i < length; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0xf]);
  }
  return out;
}

}  // namespace

struct Sha256Stream::State {
  EVP_MD_CTX* ctx = nullptr;
  ~State() { EVP_MD_CTX_free(ctx); }
};

Sha256Stream::Sha256Stream() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  if (state_->ctx == nullptr || EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("OpenSSL cannot initialise SHA-256");
}
Sha256Stream::~Sha256Stream() = default;
Sha256Stream::Sha256Stream(Sha256Stream&&) noexcept = default;
Sha256Stream& Sha256Stream::operator=(Sha256Stream&&) noexcept = default;

void Sha256Stream::update(std::string_view bytes) {
  EVP_DigestUpdate(state_->ctx, bytes.data(), bytes.size());
}

std::string Sha256Stream::digest() const {
  // Finalise a copy, so the stream can go on.
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned length = 0;
  if (copy == nullptr || EVP_MD_CTX_copy_ex(copy, state_->ctx) != 1 || EVP_DigestFinal_ex(copy, out, &length) != 1) {
    EVP_MD_CTX_free(copy);
    throw std::runtime_error("OpenSSL cannot finish SHA-256");
  }
  EVP_MD_CTX_free(copy);
  return "sha256:" + hex(out, length);
}

std::string sha256_digest(std::string_view bytes) {
  Sha256Stream stream;
  stream.update(bytes);
  return stream.digest();
}

Result<std::string> sha256_file(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error("cannot open {}: {}", path.string(), std::strerror(errno));
  Sha256Stream stream;
  std::string buffer(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot read {}: {}", path.string(), std::strerror(errno));
    if (n == 0) break;
    stream.update(std::string_view(buffer.data(), static_cast<size_t>(n)));
  }
  return stream.digest();
}

bool is_sha256_digest(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.size() != kPrefix.size() + 64 || digest.substr(0, kPrefix.size()) != kPrefix) return false;
  for (char c : digest.substr(kPrefix.size()))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace kiln
