// One HTTP request with libcurl, nothing more: no redirect following, no auth logic, no
// retries (image/oci/registry_client does those, phase by phase). A GET's body goes to a
// capped string or, for a success status, is appended to a file; a PUT sends a body from
// memory or from a file; HEAD and POST send none. Bounded: headers and in-memory bodies
// are capped; a transfer with no progress either way for `stall_s` is cut.
#pragma once

#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::image {

/// Settings shared by every transfer of one client.
struct HttpSettings {
  std::filesystem::path ca_bundle;  ///< extra CA file (CURLOPT_CAINFO); "" = the system's
  long stall_s = 30;                ///< connect timeout, and no-progress limit (CURLOPT_LOW_SPEED_*)
};

/// Where a success body (200 or 206) goes: a blob file, resumed or restarted. Any other
/// status's body goes to HttpResponse::body, capped.
struct HttpBodyFile {
  int fd = -1;              ///< written at its current offset (== `offset`)
  uint64_t offset = 0;      ///< bytes already in the file; a 200 (Range ignored) truncates them,
                            ///< a 206 must start exactly there (Content-Range)
  uint64_t size_limit = 0;  ///< the file may not grow past this (too_large)
  std::function<void(uint64_t in_file)> progress;  ///< bytes in the file so far (may be empty)
};

struct HttpResponse {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lowercased, in order
  std::string body;          ///< the body when not streamed to a file (capped)
  uint64_t file_bytes = 0;   ///< bytes written to the file by this transfer
  bool restarted = false;    ///< a 200 answered a Range request: the file was truncated first
  /// The first header `name` (lowercase), "" if absent.
  std::string header(std::string_view name) const;
  /// Every header `name`, joined with ", " (WWW-Authenticate may come several times).
  std::string joined(std::string_view name) const;
};

/// Why a transfer did not complete.
enum class HttpFailure {
  transport,  ///< connection refused/reset, broken body: worth retrying
  stalled,    ///< no progress for stall_s: worth resuming
  tls,        ///< certificate or handshake refused: not retried
  too_large,  ///< the body passed its cap: not retried
  local,      ///< writing the file, or a bad URL: not retried
};

struct HttpError {
  HttpFailure kind;
  std::string message;  ///< libcurl's words, with the URL
  uint64_t file_bytes = 0;  ///< appended before it failed (a resume continues after them)
};

/// The outcome of a GET: a response (any status), or why there is none.
struct HttpOutcome {
  bool ok = false;
  HttpResponse response;
  HttpError error{HttpFailure::transport, {}, 0};
};

/// What a request sends. GET and HEAD send nothing; POST sends an empty body; PUT sends
/// `body` or, when `file_fd` >= 0, `file_size` bytes of that file from offset 0 (read with
/// pread, so one fd serves every attempt).
struct HttpUpload {
  std::string method = "GET";  ///< GET | HEAD | POST | PUT
  std::string_view body;
  int file_fd = -1;
  uint64_t file_size = 0;
  std::function<void(uint64_t sent)> progress;  ///< bytes of a file body sent so far (may be empty)
};

/// Send `request.method` to `url` with `headers` ("Name: value"). `file` (nullable)
/// receives a 200/206 body; other bodies (and all bodies when `file` is null) are kept
/// up to `max_body` bytes, more is too_large.
HttpOutcome http_request(const std::string& url, const HttpUpload& request, const std::vector<std::string>& headers,
                         const HttpSettings& settings, uint64_t max_body, const HttpBodyFile* file);

/// http_request with GET.
inline HttpOutcome http_get(const std::string& url, const std::vector<std::string>& headers,
                            const HttpSettings& settings, uint64_t max_body, const HttpBodyFile* file) {
  return http_request(url, HttpUpload{}, headers, settings, max_body, file);
}

/// Parse a URL into scheme, host and port (for "same origin?" on redirects); Location
/// values are resolved against `base`. Errors on anything that is not http(s).
struct UrlParts {
  std::string url;     ///< the absolute URL
  std::string scheme;  ///< "http" / "https"
  std::string host;    ///< lowercase
  std::string port;    ///< explicit or the scheme's default
};
Result<UrlParts> resolve_url(const std::string& base, const std::string& location);

}  // namespace kiln::image
