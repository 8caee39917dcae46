#include "image/oci/http_transfer.h"

#include "common/clock.h"
#include "image/oci/curl_library.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

namespace kiln::image {

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return {};
}

std::string HttpResponse::joined(std::string_view name) const {
  std::string out;
  for (const auto& [key, value] : headers) {
    if (key != name) continue;
    if (!out.empty()) out += ", ";
    out += value;
  }
  return out;
}

namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxHeaders = 200;

// libcurl's functions once curl::library() has loaded it (every entry point below does
// that first), for the deleters and callbacks that cannot be handed it.
const curl::Library& api() { return **curl::library(); }

struct CurlDeleter {
  void operator()(CURL* c) const { api().easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { api().slist_free_all(l); }
};
struct UrlDeleter {
  void operator()(CURLU* u) const { api().url_cleanup(u); }
};

/// State the libcurl callbacks fill in.
struct Transfer {
  CURL* curl = nullptr;
  HttpResponse response;
  size_t header_bytes = 0;
  uint64_t max_body = 0;
  const HttpBodyFile* file = nullptr;
  bool too_large = false;
  bool started = false;  ///< the first body byte of a 200/206 arrived
  long stall_s = 30;
  bool stalled = false;
  curl_off_t last_now = -1;          ///< bytes received at the last progress call
  size_t last_headers = 0;           ///< header bytes at the last progress call
  Clock::time_point last_progress{};  ///< when that count last grew
  uint64_t base = 0;     ///< bytes in the file before this transfer's body
  std::string write_error;
  const HttpUpload* upload = nullptr;
  uint64_t sent = 0;  ///< bytes of the upload body handed to libcurl
  curl_off_t last_up = -1;
  std::string read_error;
};

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return std::string(s);
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * count;
  t->header_bytes += n;
  if (t->header_bytes > kMaxHeaderBytes || t->response.headers.size() >= kMaxHeaders) return 0;
  std::string_view line(data, n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (after 1xx): forget the earlier one's headers
    t->response.headers.clear();
    return n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return n;
  std::string name = trim(line.substr(0, colon));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  t->response.headers.emplace_back(std::move(name), trim(line.substr(colon + 1)));
  return n;
}

bool write_all(int fd, const char* data, size_t n, std::string* error) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      *error = std::strerror(errno);
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

/// Before the first byte of a success body: a 206 must continue exactly at the file's end;
/// a 200 is the whole blob (the server ignored Range), so what the file held goes.
bool start_file(Transfer* t, long status) {
  const HttpBodyFile& f = *t->file;
  if (status == 206) {
    std::string range = t->response.header("content-range");
    std::string expected = fmt::format("bytes {}-", f.offset);
    if (range.rfind(expected, 0) != 0) {
      t->write_error = fmt::format("asked for bytes from {}, the server sent Content-Range '{}'", f.offset,
                                   range.substr(0, 100));
      return false;
    }
    t->base = f.offset;
    return true;
  }
  if (f.offset > 0) {
    if (::ftruncate(f.fd, 0) != 0 || ::lseek(f.fd, 0, SEEK_SET) != 0) {
      t->write_error = std::strerror(errno);
      return false;
    }
    t->response.restarted = true;
  }
  t->base = 0;
  return true;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * count;
  long status = 0;
  api().easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->file && (status == 200 || status == 206)) {
    if (!t->started && !start_file(t, status)) return 0;
    t->started = true;
    if (t->base + t->response.file_bytes + n > t->file->size_limit) {
      t->too_large = true;
      return 0;
    }
    if (!write_all(t->file->fd, data, n, &t->write_error)) return 0;
    t->response.file_bytes += n;
    if (t->file->progress) t->file->progress(t->base + t->response.file_bytes);
    return n;
  }
  if (t->response.body.size() + n > t->max_body) {
    t->too_large = true;
    return 0;
  }
  t->response.body.append(data, n);
  return n;
}

/// No byte for stall_s (headers included: a server that accepts and never answers): cut.
/// CURLOPT_LOW_SPEED_* stays set as the backstop, but libcurl averages the speed over a
/// window of several seconds, so after a burst it notices a dead transfer late.
int on_progress(void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) {
  auto* t = static_cast<Transfer*>(user);
  auto now = Clock::now();
  if (dlnow != t->last_now || ulnow != t->last_up || t->header_bytes != t->last_headers) {
    t->last_now = dlnow;
    t->last_up = ulnow;
    t->last_headers = t->header_bytes;
    t->last_progress = now;
    return 0;
  }
  if (now - t->last_progress >= std::chrono::seconds(t->stall_s)) {
    t->stalled = true;
    return 1;  // aborts the transfer (CURLE_ABORTED_BY_CALLBACK)
  }
  return 0;
}

/// The request body, from memory or from the file (pread: a retried PUT rewinds by
/// starting again at 0, see on_seek).
size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const HttpUpload& u = *t->upload;
  const uint64_t total = u.file_fd >= 0 ? u.file_size : u.body.size();
  size_t n = static_cast<size_t>(std::min<uint64_t>(size * count, total - std::min(total, t->sent)));
  if (n == 0) return 0;
  if (u.file_fd < 0) {
    std::memcpy(buffer, u.body.data() + t->sent, n);
  } else {
    ssize_t r;
    do r = ::pread(u.file_fd, buffer, n, static_cast<off_t>(t->sent));
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
      t->read_error = r < 0 ? std::strerror(errno) : "the file is shorter than its recorded size";
      return CURL_READFUNC_ABORT;
    }
    n = static_cast<size_t>(r);
  }
  t->sent += n;
  if (u.progress && u.file_fd >= 0) u.progress(t->sent);
  return n;
}

/// libcurl rewinds the body when it must send it again (a redirect, an auth retry).
int on_seek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset < 0) return CURL_SEEKFUNC_CANTSEEK;
  t->sent = static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

/// Method-specific options: what is sent, and whether a body comes back.
void set_method(CURL* c, Transfer* t, const HttpUpload& u) {
  if (u.method == "HEAD") {
    api().easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (u.method == "POST") {
    api().easy_setopt(c, CURLOPT_POST, 1L);
    api().easy_setopt(c, CURLOPT_POSTFIELDS, "");
    api().easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
  } else if (u.method == "PUT") {
    t->upload = &u;
    api().easy_setopt(c, CURLOPT_UPLOAD, 1L);
    api().easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(u.file_fd >= 0 ? u.file_size : u.body.size()));
    api().easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    api().easy_setopt(c, CURLOPT_READDATA, t);
    api().easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
    api().easy_setopt(c, CURLOPT_SEEKDATA, t);
  } else {
    api().easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
}

HttpFailure classify(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return HttpFailure::stalled;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
      return HttpFailure::tls;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_WRITE_ERROR:
    case CURLE_OUT_OF_MEMORY:
      return HttpFailure::local;
    default:
      return HttpFailure::transport;
  }
}

}  // namespace

HttpOutcome http_request(const std::string& url, const HttpUpload& request, const std::vector<std::string>& headers,
                         const HttpSettings& settings, uint64_t max_body, const HttpBodyFile* file) {
  HttpOutcome out;
  auto lib = curl::library();
  if (!lib) {
    out.error = {HttpFailure::local, lib.error().message, 0};
    return out;
  }
  const std::string& m = request.method;
  if (m != "GET" && m != "HEAD" && m != "POST" && m != "PUT") {
    out.error = {HttpFailure::local, fmt::format("internal error: HTTP method '{}' is not one kiln sends", m), 0};
    return out;
  }
  std::unique_ptr<CURL, CurlDeleter> curl(api().easy_init());
  if (!curl) {
    out.error = {HttpFailure::local, "libcurl could not start a transfer (out of memory?)", 0};
    return out;
  }
  std::unique_ptr<curl_slist, SlistDeleter> list;
  std::vector<std::string> all = headers;
  if (m == "PUT") all.push_back("Expect:");  // no 100-continue round trip before the body
  for (const std::string& h : all) {
    curl_slist* next = api().slist_append(list.get(), h.c_str());
    if (!next) {
      out.error = {HttpFailure::local, "out of memory building request headers", 0};
      return out;
    }
    (void)list.release();
    list.reset(next);
  }
  Transfer t;
  t.curl = curl.get();
  t.max_body = max_body;
  t.file = file;
  t.stall_s = settings.stall_s;
  t.last_progress = Clock::now();
  char curl_error[CURL_ERROR_SIZE] = {};
  CURL* c = curl.get();
  api().easy_setopt(c, CURLOPT_URL, url.c_str());
  set_method(c, &t, request);
  api().easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  api().easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);  // registry_client follows redirects itself
  api().easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  api().easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  api().easy_setopt(c, CURLOPT_ERRORBUFFER, curl_error);
  api().easy_setopt(c, CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
  api().easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  api().easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!settings.ca_bundle.empty()) api().easy_setopt(c, CURLOPT_CAINFO, settings.ca_bundle.c_str());
  api().easy_setopt(c, CURLOPT_CONNECTTIMEOUT, settings.stall_s);
  api().easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  api().easy_setopt(c, CURLOPT_LOW_SPEED_TIME, settings.stall_s);
  api().easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  api().easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  api().easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  api().easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  api().easy_setopt(c, CURLOPT_HEADERDATA, &t);
  api().easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  api().easy_setopt(c, CURLOPT_WRITEDATA, &t);
  // Proxies: libcurl reads http_proxy/HTTPS_PROXY/NO_PROXY itself; nothing set here overrides it.
  CURLcode code = api().easy_perform(c);
  api().easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.response.status);
  if (code == CURLE_OK) {
    out.ok = true;
    out.response = std::move(t.response);
    return out;
  }
  std::string why = curl_error[0] ? curl_error : api().easy_strerror(code);
  if (t.too_large) {
    out.error = {HttpFailure::too_large, fmt::format("{} {}: the response is larger than kiln accepts", m, url),
                 t.response.file_bytes};
  } else if (!t.write_error.empty()) {
    out.error = {HttpFailure::local, fmt::format("{} {}: writing the download failed: {}", m, url, t.write_error),
                 t.response.file_bytes};
  } else if (t.header_bytes > kMaxHeaderBytes || t.response.headers.size() >= kMaxHeaders) {
    out.error = {HttpFailure::too_large, fmt::format("{} {}: response headers larger than kiln accepts", m, url),
                 t.response.file_bytes};
  } else if (t.stalled) {
    out.error = {HttpFailure::stalled, fmt::format("{} {}: no data for {} s", m, url, t.stall_s), t.response.file_bytes};
  } else if (!t.read_error.empty()) {
    out.error = {HttpFailure::local, fmt::format("{} {}: reading the upload failed: {}", m, url, t.read_error), 0};
  } else {
    out.error = {classify(code), fmt::format("{} {}: {}", m, url, why), t.response.file_bytes};
  }
  return out;
}

Result<UrlParts> resolve_url(const std::string& base, const std::string& location) {
  KILN_TRY(curl::library());
  std::unique_ptr<CURLU, UrlDeleter> u(api().url());
  if (!u) return make_error("out of memory parsing a URL");
  if (api().url_set(u.get(), CURLUPART_URL, base.c_str(), 0) != CURLUE_OK) {
    return make_error("'{}' is not a valid URL", base);
  }
  if (!location.empty() && api().url_set(u.get(), CURLUPART_URL, location.c_str(), 0) != CURLUE_OK) {
    return make_error("the registry redirected to '{}', which is not a valid URL", location.substr(0, 300));
  }
  auto part = [&](CURLUPart which, unsigned flags) -> std::string {
    char* p = nullptr;
    if (api().url_get(u.get(), which, &p, flags) != CURLUE_OK || !p) return {};
    std::string s(p);
    api().free(p);
    return s;
  };
  UrlParts parts;
  parts.url = part(CURLUPART_URL, 0);
  parts.scheme = part(CURLUPART_SCHEME, 0);
  parts.host = part(CURLUPART_HOST, 0);
  parts.port = part(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  for (char& ch : parts.host) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (parts.scheme != "http" && parts.scheme != "https") {
    return make_error("'{}' is not an http(s) URL", parts.url.substr(0, 300));
  }
  return parts;
}

}  // namespace kiln::image
