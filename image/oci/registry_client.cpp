#include "image/oci/registry_client.h"

#include "common/log.h"
#include "common/sha256.h"
#include "common/unique_fd.h"
#include "image/oci/http_transfer.h"
#include "image/oci/progress_line.h"
#include "image/oci/registry_auth.h"
#include "image/oci/www_authenticate.h"

#include "image/oci/curl_library.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <regex>
#include <thread>

namespace kiln::image {

namespace {

constexpr uint64_t kMaxManifestBytes = 4 << 20;
constexpr uint64_t kMaxTokenBytes = 1 << 20;
constexpr uint64_t kMaxErrorBody = 64 << 10;
constexpr int kMaxRedirects = 5;
constexpr double kMaxRetryAfterS = 60;

constexpr const char* kManifestAccept =
    "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

// Without libcurl "" (the request that would use it fails with the reason at once).
std::string url_escape(const std::string& s) {
  auto lib = curl::library();
  if (!lib) return {};
  char* e = (*lib)->easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  (*lib)->free(e);
  return out;
}

/// "application/json; charset=utf-8" -> "application/json".
std::string media_type_of(std::string content_type) {
  if (auto semi = content_type.find(';'); semi != std::string::npos) content_type.resize(semi);
  content_type.erase(content_type.find_last_not_of(" \t") + 1);
  return lower(content_type);
}

/// The first entry of a registry's error body ({"errors":[{"code","message"}]}), for messages.
std::string registry_error_text(const std::string& body) {
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_object() && doc.contains("errors") && doc["errors"].is_array() && !doc["errors"].empty()) {
    const auto& e = doc["errors"][0];
    std::string code = e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
    std::string message = e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
    return fmt::format(" ({}{}{})", code, code.empty() || message.empty() ? "" : ": ", message.substr(0, 300));
  }
  return {};
}

bool retryable_status(long status) { return status == 429 || status == 500 || status == 502 || status == 503 || status == 504; }

bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/// Seconds a Retry-After header asks for (delta-seconds or an HTTP date), capped; nullopt if absent/invalid.
std::optional<double> retry_after_s(const std::string& value) {
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return value.size() > 6 ? kMaxRetryAfterS : std::min(kMaxRetryAfterS, std::stod(value));
  }
  auto lib = curl::library();
  if (!lib) return std::nullopt;
  time_t when = (*lib)->getdate(value.c_str(), nullptr);
  if (when < 0) return std::nullopt;
  return std::clamp(std::difftime(when, std::time(nullptr)), 0.0, kMaxRetryAfterS);
}

// OCI distribution spec name and reference grammars.
bool valid_repository(const std::string& repo) {
  static const std::regex re("[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*");
  return repo.size() <= 255 && std::regex_match(repo, re);
}
bool valid_tag(const std::string& tag) {
  static const std::regex re("[A-Za-z0-9_][A-Za-z0-9._-]{0,127}");
  return std::regex_match(tag, re);
}
bool valid_registry(const std::string& registry) {
  static const std::regex re("[A-Za-z0-9.-]+(:[0-9]{1,5})?|\\[[0-9A-Fa-f:.]+\\](:[0-9]{1,5})?");
  return registry.size() <= 255 && std::regex_match(registry, re);
}

class RegistrySource final : public RegistryClient {
 public:
  RegistrySource(std::string registry, std::string repository, RegistryOptions options, bool insecure)
      : registry_(std::move(registry)),
        repository_(std::move(repository)),
        options_(std::move(options)),
        insecure_(insecure),
        base_url_(fmt::format("{}://{}", insecure ? "http" : "https", registry_api_host(registry_))) {
    settings_.ca_bundle = options_.ca_bundle;
    settings_.stall_s = std::max(1L, std::lround(options_.timeout_s));
  }

  Result<FetchedManifest> manifest(const std::string& reference) override;
  Result<void> blob(const std::string& digest, uint64_t size, const std::filesystem::path& dest,
                    const BlobProgress& progress) override;
  std::string describe() const override {
    return fmt::format("registry {} repository {}", registry_, repository_);
  }
  Result<bool> has_blob(const std::string& digest) override;
  Result<void> push_blob(const std::string& digest, uint64_t size, const std::filesystem::path& path) override;
  Result<void> push_manifest(const std::string& tag, std::string_view bytes, std::string_view media_type) override;

 private:
  /// A blob download in progress: where its bytes go.
  struct BlobTarget {
    int fd;
    uint64_t size;
    std::function<void(uint64_t)> progress;
  };

  Result<HttpResponse> fetch(const std::string& url, const std::vector<std::string>& headers, uint64_t max_body,
                             BlobTarget* blob, const std::string& what) {
    return send(url, HttpUpload{}, headers, max_body, blob, what);
  }
  Result<HttpResponse> send(const std::string& url, const HttpUpload& upload, const std::vector<std::string>& headers,
                            uint64_t max_body, BlobTarget* blob, const std::string& what);
  HttpOutcome follow_redirects(const std::string& url, const HttpUpload& upload,
                               const std::vector<std::string>& headers, uint64_t max_body, const HttpBodyFile* file,
                               std::string* error);
  Result<std::string> start_upload(const std::string& what);
  Error push_refused(const HttpResponse& r, const std::string& what) const;
  Result<void> authenticate(const HttpResponse& unauthorized, bool again);
  Result<void> fetch_token(const AuthChallenge& challenge);
  Result<std::optional<RegistryCredentials>> credentials();
  Error no_credentials_error(const std::string& scheme) const;
  Error transport_error(const HttpError& e, int attempts, const std::string& what) const;
  Error status_error(const HttpResponse& r, const std::string& what) const;
  void pause_before_retry(int attempt, const HttpResponse* r, const std::string& why);
  bool same_origin(const UrlParts& url) const;

  std::string registry_;
  std::string repository_;
  RegistryOptions options_;
  bool insecure_;
  std::string base_url_;
  HttpSettings settings_;
  std::string authorization_;  ///< "Authorization: ..." for the registry's own origin, once known
  bool credentials_loaded_ = false;
  std::optional<RegistryCredentials> credentials_;
};

bool RegistrySource::same_origin(const UrlParts& url) const {
  auto base = resolve_url(base_url_, "");
  return base && base->scheme == url.scheme && base->host == url.host && base->port == url.port;
}

Result<std::optional<RegistryCredentials>> RegistrySource::credentials() {
  if (!credentials_loaded_) {
    KILN_ASSIGN_OR_RETURN(credentials_, load_registry_credentials(registry_));
    credentials_loaded_ = true;
  }
  return credentials_;
}

std::string basic_header(const RegistryCredentials& c) {
  // Base64 of "user:password" (RFC 7617).
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string in = c.username + ":" + c.password;
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 2]));
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? alphabet[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? alphabet[n & 63] : '=';
  }
  return "Authorization: Basic " + out;
}

Error RegistrySource::no_credentials_error(const std::string& scheme) const {
  return make_error(
      "registry {} asks for credentials ({} auth) to pull {}: log in (docker login {}), or set "
      "$REGISTRY_AUTH_FILE to an auth file with an \"auths\" entry for {} (kiln read: {})",
      registry_, scheme, repository_, registry_, registry_,
      registry_auth_file().empty() ? std::string("no file: HOME is not set") : registry_auth_file().string());
}

/// On a 401 from the registry: get what its challenge asks for. `again`: the previous
/// authorization was refused already.
Result<void> RegistrySource::authenticate(const HttpResponse& unauthorized, bool again) {
  std::string header = unauthorized.joined("www-authenticate");
  if (header.empty()) {
    return make_error("registry {} answered 401 without a WWW-Authenticate header: it does not say how to log in",
                      registry_);
  }
  KILN_ASSIGN_OR_RETURN(auto challenges, parse_www_authenticate(header));
  KILN_ASSIGN_OR_RETURN(auto creds, credentials());
  if (again) {
    return make_error(
        "registry {} refused access to repository {} {}: check the name; if it is private, log in with an account "
        "that may pull it (docker login {} or $REGISTRY_AUTH_FILE)",
        registry_, repository_, creds ? fmt::format("with the credentials of user '{}'", creds->username)
                                       : std::string("without credentials"),
        registry_);
  }
  for (const AuthChallenge& c : challenges) {
    if (c.scheme == "bearer") return fetch_token(c);
  }
  for (const AuthChallenge& c : challenges) {
    if (c.scheme == "basic") {
      if (!creds) return no_credentials_error("Basic");
      if (insecure_) log::verbose("kiln: sending Basic credentials for {} over plain HTTP (an insecure registry)", registry_);
      authorization_ = basic_header(*creds);
      return {};
    }
  }
  return make_error("registry {} asks for an authentication scheme kiln does not speak ({}); kiln speaks Bearer and Basic",
                    registry_, challenges.front().scheme);
}

/// The Bearer flow: GET realm?service=..&scope=repository:<repo>:pull, with Basic
/// credentials when there are some; the answer's token (or access_token) authorizes.
Result<void> RegistrySource::fetch_token(const AuthChallenge& challenge) {
  std::string realm = challenge.param("realm");
  if (realm.empty()) return make_error("registry {} asks for a Bearer token but names no realm to get it from", registry_);
  auto realm_url = resolve_url(base_url_, realm);
  if (!realm_url) return with_context(fmt::format("registry {}'s token realm", registry_), realm_url.error());
  KILN_ASSIGN_OR_RETURN(auto creds, credentials());
  if (realm_url->scheme == "http" && !insecure_ && creds) {
    return make_error("registry {} sends kiln to a token service over plain HTTP ({}); kiln does not send credentials "
                      "there: list {} as an insecure registry only if it is a test registry",
                      registry_, realm_url->url, registry_);
  }
  std::string url = realm_url->url;
  url += url.find('?') == std::string::npos ? '?' : '&';
  std::string service = challenge.param("service");
  if (!service.empty()) url += "service=" + url_escape(service) + "&";
  url += "scope=" + url_escape(fmt::format("repository:{}:{}", repository_, options_.push ? "pull,push" : "pull"));
  std::vector<std::string> headers = {"Accept: application/json"};
  if (creds) headers.push_back(basic_header(*creds));

  const std::string what = fmt::format("getting a pull token for {} from {}", repository_, realm_url->url);
  HttpResponse r;
  for (int attempt = 0;; ++attempt) {
    std::string error;
    HttpOutcome o = follow_redirects(url, HttpUpload{}, headers, kMaxTokenBytes, nullptr, &error);
    if (!error.empty()) return make_error("{}: {}", what, error);
    bool retry = !o.ok ? (o.error.kind == HttpFailure::transport || o.error.kind == HttpFailure::stalled)
                       : retryable_status(o.response.status);
    if (retry && attempt < options_.max_retries) {
      pause_before_retry(attempt, o.ok ? &o.response : nullptr, o.ok ? fmt::format("HTTP {}", o.response.status) : o.error.message);
      continue;
    }
    if (!o.ok) return transport_error(o.error, attempt + 1, what);
    r = std::move(o.response);
    break;
  }
  if (r.status == 401 || r.status == 403) {
    if (!creds) return no_credentials_error("Bearer");
    return make_error("{}: the token service refused the credentials of user '{}' (HTTP {}): log in again "
                      "(docker login {}) or fix $REGISTRY_AUTH_FILE",
                      what, creds->username, r.status, registry_);
  }
  if (r.status != 200) return status_error(r, what);
  nlohmann::json doc = nlohmann::json::parse(r.body, nullptr, false);
  std::string token;
  for (const char* key : {"token", "access_token"}) {
    if (doc.is_object() && doc.contains(key) && doc[key].is_string() && !doc[key].get<std::string>().empty()) {
      token = doc[key].get<std::string>();
      break;
    }
  }
  if (token.empty() || token.find_first_of("\r\n") != std::string::npos) {
    return make_error("{}: the answer holds no \"token\" or \"access_token\" string", what);
  }
  authorization_ = "Authorization: Bearer " + token;
  return {};
}

/// One attempt: the request, then (GET and HEAD) follow up to kMaxRedirects redirects.
/// The Authorization header goes only to the registry's own scheme://host:port (never to
/// blob storage elsewhere). `error` is set for a redirect kiln refuses.
HttpOutcome RegistrySource::follow_redirects(const std::string& url, const HttpUpload& upload,
                                             const std::vector<std::string>& headers, uint64_t max_body,
                                             const HttpBodyFile* file, std::string* error) {
  const bool follows = upload.method == "GET" || upload.method == "HEAD";
  std::string current = url;
  for (int hop = 0;; ++hop) {
    auto parts = resolve_url(current, "");
    if (!parts) {
      *error = parts.error().message;
      return {};
    }
    std::vector<std::string> h = headers;
    if (!authorization_.empty() && same_origin(*parts)) h.push_back(authorization_);
    HttpOutcome o = http_request(parts->url, upload, h, settings_, max_body, file);
    if (!o.ok || !follows || !is_redirect(o.response.status)) return o;
    if (hop >= kMaxRedirects) {
      *error = fmt::format("more than {} redirects from {}", kMaxRedirects, url);
      return {};
    }
    std::string location = o.response.header("location");
    auto next = resolve_url(parts->url, location);
    if (location.empty() || !next) {
      *error = fmt::format("HTTP {} redirect from {} without a usable Location", o.response.status, parts->url);
      return {};
    }
    if (next->scheme == "http" && parts->scheme == "https") {
      *error = fmt::format("{} redirects from HTTPS to plain HTTP ({}); refused", parts->url, next->url);
      return {};
    }
    log::debug("kiln: {} redirects to {}", parts->url, next->url);
    current = next->url;
  }
}

void RegistrySource::pause_before_retry(int attempt, const HttpResponse* r, const std::string& why) {
  double wait = std::min(8.0, 0.5 * std::pow(2.0, attempt));
  if (r) {
    if (auto after = retry_after_s(r->header("retry-after"))) wait = *after;
  }
  log::verbose("kiln: {} {}: retrying in {:.1f} s (attempt {} of {})", registry_, why, wait, attempt + 2,
               options_.max_retries + 1);
  std::this_thread::sleep_for(std::chrono::duration<double>(wait));
}

Error RegistrySource::transport_error(const HttpError& e, int attempts, const std::string& what) const {
  switch (e.kind) {
    case HttpFailure::stalled:
      return Error{fmt::format("{}: no data for {} s, {} attempt(s): {}; the registry or the network stalls (raise the "
                               "timeout, or try again later)",
                               what, settings_.stall_s, attempts, e.message),
                   ErrorKind::timeout};
    case HttpFailure::tls:
      return make_error("{}: TLS verification of {} failed: {}; if it uses a private CA, pass its certificate as the "
                        "registry CA bundle; plain HTTP only for a test registry (insecure registry)",
                        what, registry_, e.message);
    case HttpFailure::too_large:
    case HttpFailure::local:
      return make_error("{}: {}", what, e.message);
    case HttpFailure::transport:
      break;
  }
  return make_error("{}: {} (after {} attempt(s)); check that {} is reachable (and any HTTPS_PROXY/NO_PROXY)", what,
                    e.message, attempts, registry_);
}

Error RegistrySource::status_error(const HttpResponse& r, const std::string& what) const {
  return make_error("{}: registry {} answered HTTP {}{}", what, registry_, r.status, registry_error_text(r.body));
}

/// A request to the registry with authentication, redirects (GET, HEAD) and bounded
/// retries. Returns the final response for the caller to judge (any status but 401 and,
/// unless retries ran out, 429/5xx). For a blob, each attempt continues from what the
/// file holds; an upload is sent again whole.
Result<HttpResponse> RegistrySource::send(const std::string& url, const HttpUpload& upload,
                                          const std::vector<std::string>& headers, uint64_t max_body, BlobTarget* blob,
                                          const std::string& what) {
  bool authenticated = false;
  for (int attempt = 0;;) {
    std::vector<std::string> h = headers;
    std::optional<HttpBodyFile> file;
    if (blob) {
      off_t offset = ::lseek(blob->fd, 0, SEEK_CUR);
      if (offset < 0) return make_error("{}: {}", what, std::strerror(errno));
      file = HttpBodyFile{blob->fd, static_cast<uint64_t>(offset), blob->size, blob->progress};
      if (offset > 0) h.push_back(fmt::format("Range: bytes={}-", offset));
    }
    std::string error;
    HttpOutcome o = follow_redirects(url, upload, h, max_body, file ? &*file : nullptr, &error);
    if (!error.empty()) return make_error("{}: {}", what, error);
    if (!o.ok) {
      bool retry = o.error.kind == HttpFailure::transport || o.error.kind == HttpFailure::stalled;
      if (retry && attempt < options_.max_retries) {
        pause_before_retry(attempt++, nullptr, o.error.message);
        continue;
      }
      return transport_error(o.error, attempt + 1, what);
    }
    if (o.response.status == 401) {
      auto auth = authenticate(o.response, authenticated);
      if (!auth) return with_context(what, auth.error());
      authenticated = true;
      continue;
    }
    if (retryable_status(o.response.status) && attempt < options_.max_retries) {
      pause_before_retry(attempt++, &o.response, fmt::format("answered HTTP {}", o.response.status));
      continue;
    }
    return std::move(o.response);
  }
}

Result<FetchedManifest> RegistrySource::manifest(const std::string& reference) {
  if (!is_sha256_digest(reference) && !valid_tag(reference)) {
    return make_error("'{}' is neither a tag nor a sha256 digest (tags: letters, digits, '_', '.', '-', at most 128)",
                      reference.substr(0, 200));
  }
  const std::string what = fmt::format("fetching manifest {} of {} from registry {}", reference, repository_, registry_);
  std::string url = fmt::format("{}/v2/{}/manifests/{}", base_url_, repository_, reference);
  KILN_ASSIGN_OR_RETURN(HttpResponse r, fetch(url, {kManifestAccept}, kMaxManifestBytes, nullptr, what));
  if (r.status == 404) {
    return Error{fmt::format("registry {} has no manifest {} in repository {}{}: check the tag or digest (and the "
                             "repository name)",
                             registry_, reference, repository_, registry_error_text(r.body)),
                 ErrorKind::not_found};
  }
  if (r.status != 200) return status_error(r, what);
  return FetchedManifest{std::move(r.body), media_type_of(r.header("content-type"))};
}

Result<void> RegistrySource::blob(const std::string& digest, uint64_t size, const std::filesystem::path& dest,
                                  const BlobProgress& progress) {
  if (!is_sha256_digest(digest)) return make_error("'{}' is not a sha256 digest; kiln fetches sha256 blobs only", digest.substr(0, 200));
  const std::string what = fmt::format("downloading blob {} of {} from registry {}", digest, repository_, registry_);
  UniqueFd fd(::open(dest.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return make_error("{}: opening {}: {}", what, dest.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return make_error("{}: {}: {}", what, dest.string(), std::strerror(errno));
  // A prefix longer than the blob is not a prefix of it: start over.
  if (static_cast<uint64_t>(st.st_size) > size && ::ftruncate(fd.get(), 0) != 0) {
    return make_error("{}: truncating {}: {}", what, dest.string(), std::strerror(errno));
  }
  off_t held = ::lseek(fd.get(), 0, SEEK_END);
  if (held < 0) return make_error("{}: {}", what, std::strerror(errno));
  if (static_cast<uint64_t>(held) == size) return {};  // complete from an earlier attempt; the caller verifies

  ProgressLine line(digest.substr(0, 19), size, options_.progress_on_terminal);
  BlobTarget target{fd.get(), size, [&](uint64_t in_file) {
                      line.update(in_file);
                      if (progress) progress(in_file, size);
                    }};
  std::string url = fmt::format("{}/v2/{}/blobs/{}", base_url_, repository_, digest);
  for (bool restarted = false;;) {
    KILN_ASSIGN_OR_RETURN(HttpResponse r, fetch(url, {"Accept: */*"}, kMaxErrorBody, &target, what));
    if (r.status == 416 && !restarted) {  // our prefix does not fit what the server has: once from 0
      if (::ftruncate(fd.get(), 0) != 0 || ::lseek(fd.get(), 0, SEEK_SET) != 0) {
        return make_error("{}: {}", what, std::strerror(errno));
      }
      restarted = true;
      continue;
    }
    if (r.status == 404) {
      return Error{fmt::format("registry {} has no blob {} in repository {}{} (the manifest names it: the registry is "
                               "missing data)",
                               registry_, digest, repository_, registry_error_text(r.body)),
                   ErrorKind::not_found};
    }
    if (r.status != 200 && r.status != 206) return status_error(r, what);
    break;
  }
  off_t end = ::lseek(fd.get(), 0, SEEK_CUR);
  line.finish();
  if (end < 0 || static_cast<uint64_t>(end) != size) {
    return make_error("{}: the registry sent {} bytes, the manifest says {}: a truncated blob (try again)", what,
                      end < 0 ? 0 : static_cast<uint64_t>(end), size);
  }
  return {};
}

Error RegistrySource::push_refused(const HttpResponse& r, const std::string& what) const {
  if (r.status == 401 || r.status == 403) {
    return make_error("{}: registry {} refused to let kiln push to repository {} (HTTP {}{}): log in with an account "
                      "that may push (docker login {} or $REGISTRY_AUTH_FILE)",
                      what, registry_, repository_, r.status, registry_error_text(r.body), registry_);
  }
  return status_error(r, what);
}

Result<bool> RegistrySource::has_blob(const std::string& digest) {
  if (!is_sha256_digest(digest)) return make_error("'{}' is not a sha256 digest", digest.substr(0, 200));
  const std::string what = fmt::format("looking for blob {} in {} on registry {}", digest, repository_, registry_);
  HttpUpload head;
  head.method = "HEAD";
  KILN_ASSIGN_OR_RETURN(HttpResponse r, send(fmt::format("{}/v2/{}/blobs/{}", base_url_, repository_, digest), head,
                                             {"Accept: */*"}, kMaxErrorBody, nullptr, what));
  if (r.status == 200) return true;
  if (r.status == 404) return false;
  return status_error(r, what);
}

/// POST an upload session; its URL (the Location, resolved against the registry).
Result<std::string> RegistrySource::start_upload(const std::string& what) {
  HttpUpload post;
  post.method = "POST";
  KILN_ASSIGN_OR_RETURN(HttpResponse r, send(fmt::format("{}/v2/{}/blobs/uploads/", base_url_, repository_), post,
                                             {"Content-Length: 0"}, kMaxErrorBody, nullptr, what));
  if (r.status != 202) return push_refused(r, what);
  auto location = resolve_url(base_url_ + "/", r.header("location"));
  if (r.header("location").empty() || !location) {
    return make_error("{}: registry {} started an upload without a usable Location header", what, registry_);
  }
  if (!same_origin(*location)) {
    return make_error("{}: registry {} sends the upload to another host ({}); kiln uploads only to the registry itself",
                      what, registry_, location->url.substr(0, 300));
  }
  return location->url;
}

Result<void> RegistrySource::push_blob(const std::string& digest, uint64_t size, const std::filesystem::path& path) {
  KILN_ASSIGN_OR_RETURN(bool present, has_blob(digest));
  if (present) return {};
  const std::string what = fmt::format("uploading blob {} to {} on registry {}", digest, repository_, registry_);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return make_error("{}: opening {}: {}", what, path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != size) {
    return make_error("{}: {} is not {} bytes long", what, path.string(), size);
  }
  ProgressLine line(digest.substr(0, 19), size, options_.progress_on_terminal);
  HttpUpload put;
  put.method = "PUT";
  put.file_fd = fd.get();
  put.file_size = size;
  put.progress = [&](uint64_t sent) { line.update(sent); };
  // An upload session that failed half-way is not resumed: start a new one, once.
  for (int session = 0;; ++session) {
    KILN_ASSIGN_OR_RETURN(std::string location, start_upload(what));
    std::string url = location + (location.find('?') == std::string::npos ? "?" : "&") + "digest=" + url_escape(digest);
    KILN_ASSIGN_OR_RETURN(HttpResponse r, send(url, put, {"Content-Type: application/octet-stream"}, kMaxErrorBody,
                                               nullptr, what));
    if (r.status == 201) break;
    if (r.status == 404 && session == 0) continue;  // BLOB_UPLOAD_UNKNOWN: the session expired
    if (r.status == 400 && r.body.find("DIGEST_INVALID") != std::string::npos) {
      return make_error("{}: registry {} computed another digest for the bytes kiln sent: {} changed while it was "
                        "uploaded, or was not what its digest says",
                        what, registry_, path.string());
    }
    return push_refused(r, what);
  }
  line.finish();
  return {};
}

Result<void> RegistrySource::push_manifest(const std::string& tag, std::string_view bytes, std::string_view media_type) {
  if (!valid_tag(tag)) return make_error("'{}' is not a tag (letters, digits, '_', '.', '-', at most 128)", tag.substr(0, 200));
  if (bytes.size() > kMaxManifestBytes) return make_error("a manifest of {} bytes is larger than registries take", bytes.size());
  const std::string what = fmt::format("pushing manifest {} to {} on registry {}", tag, repository_, registry_);
  HttpUpload put;
  put.method = "PUT";
  put.body = bytes;
  KILN_ASSIGN_OR_RETURN(HttpResponse r, send(fmt::format("{}/v2/{}/manifests/{}", base_url_, repository_, tag), put,
                                             {fmt::format("Content-Type: {}", media_type)}, kMaxErrorBody, nullptr,
                                             what));
  if (r.status != 201) return push_refused(r, what);
  std::string ours = sha256_digest(bytes);
  std::string theirs = r.header("docker-content-digest");
  if (!theirs.empty() && theirs != ours) {
    return make_error("{}: registry {} stored it as {}, but its bytes hash to {}", what, registry_, theirs.substr(0, 100),
                      ours);
  }
  return {};
}

}  // namespace

std::string registry_api_host(const std::string& registry) {
  std::string host = lower(registry);
  if (host == "docker.io" || host == "index.docker.io") return "registry-1.docker.io";
  return host;
}

bool is_insecure_registry(const std::string& registry, const RegistryOptions& options) {
  std::vector<std::string> hosts = options.insecure_hosts;
  if (const char* env = std::getenv("KILN_INSECURE_REGISTRIES"); env && *env) {
    for (std::string& h : split_commas(env)) hosts.push_back(std::move(h));
  }
  std::string wanted = lower(registry);
  return std::any_of(hosts.begin(), hosts.end(), [&](const std::string& h) { return lower(h) == wanted; });
}

Result<std::unique_ptr<RegistryClient>> make_registry_client(const std::string& registry, const std::string& repository,
                                                             const RegistryOptions& options) {
  if (!valid_registry(registry)) {
    return make_error("'{}' is not a registry host[:port]", registry.substr(0, 200));
  }
  if (!valid_repository(repository)) {
    return make_error("'{}' is not a repository name (lowercase letters, digits, '.', '_', '-', separated by '/')",
                      repository.substr(0, 300));
  }
  if (options.max_retries < 0 || !(options.timeout_s >= 1)) {
    return make_error("registry options: timeout must be at least 1 s and retries at least 0");
  }
  return std::unique_ptr<RegistryClient>(
      std::make_unique<RegistrySource>(registry, repository, options, is_insecure_registry(registry, options)));
}

Result<std::unique_ptr<BlobSource>> make_registry_source(const std::string& registry, const std::string& repository,
                                                         const RegistryOptions& options) {
  KILN_ASSIGN_OR_RETURN(auto client, make_registry_client(registry, repository, options));
  return std::unique_ptr<BlobSource>(std::move(client));
}

}  // namespace kiln::image
