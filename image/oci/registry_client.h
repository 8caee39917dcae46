// A registry client over libcurl: the OCI distribution spec's pull side (as a BlobSource)
// and its push side.
//   manifest: GET /v2/<repo>/manifests/<ref>, OCI and Docker v2 manifest/index types
//   blob:     GET /v2/<repo>/blobs/<digest>, redirects followed (the Authorization header
//             only to the registry itself), resumed with Range from what `dest` holds
//   push:     HEAD /v2/<repo>/blobs/<digest> (present?), POST /v2/<repo>/blobs/uploads/ then
//             one PUT <location>?digest=<digest> with the whole blob (monolithic upload),
//             PUT /v2/<repo>/manifests/<tag>
//   auth:     401 -> WWW-Authenticate: Bearer (token from the realm, with Basic
//             credentials if the auth file has some) or Basic; credentials from
//             image/oci/registry_auth
//   retries:  429 (Retry-After honoured), 5xx, transport errors and stalls, with
//             exponential backoff, at most `max_retries` more attempts per request
// TLS is verified unless the host is listed as insecure, which means plain HTTP.
#pragma once

#include "common/result.h"
#include "image/oci/blob_source.h"

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::image {

struct RegistryOptions {
  /// host[:port] entries spoken to over plain HTTP (no TLS at all), exactly as listed (the
  /// port must match too). For loopback test registries. $KILN_INSECURE_REGISTRIES
  /// (comma-separated host[:port]) adds to it.
  std::vector<std::string> insecure_hosts;
  /// CA certificates (PEM) to verify the registry's TLS certificate with, instead of the
  /// system's. "" = the system's trust store.
  std::filesystem::path ca_bundle;
  /// Seconds without a byte (connecting, or mid-transfer) before a request counts as
  /// stalled; a stalled blob is resumed. Whole seconds, at least 1.
  double timeout_s = 30;
  /// Further attempts after a 429, a 5xx, a transport error or a stall (each request).
  int max_retries = 4;
  /// One updating progress line per blob on stderr, when stderr is a terminal.
  bool progress_on_terminal = true;
  /// Ask for push access too (a Bearer token's scope `repository:<repo>:pull,push`).
  bool push = false;
};

/// The host kiln talks to for `registry` ("docker.io" and "index.docker.io" ->
/// "registry-1.docker.io"; others unchanged, lowercased).
std::string registry_api_host(const std::string& registry);

/// Whether `registry` (host[:port]) is spoken to over plain HTTP: listed in
/// options.insecure_hosts or $KILN_INSECURE_REGISTRIES.
bool is_insecure_registry(const std::string& registry, const RegistryOptions& options);

/// A registry repository to pull from and push to.
class RegistryClient : public BlobSource {
 public:
  /// Whether blob `digest` is in the repository (HEAD).
  virtual Result<bool> has_blob(const std::string& digest) = 0;
  /// Upload `size` bytes of the file `path` as blob `digest`, unless the repository has it.
  virtual Result<void> push_blob(const std::string& digest, uint64_t size, const std::filesystem::path& path) = 0;
  /// Put `bytes` (a manifest of `media_type`) under `tag`. The registry's digest for it, when
  /// it says one, must be the bytes' own.
  virtual Result<void> push_manifest(const std::string& tag, std::string_view bytes, std::string_view media_type) = 0;
};

/// A client for `repository` on `registry` (host[:port]). Checks the names; contacts
/// nothing until the first call. Pushing needs `options.push`.
Result<std::unique_ptr<RegistryClient>> make_registry_client(const std::string& registry, const std::string& repository,
                                                             const RegistryOptions& options);

/// A BlobSource for `repository` ("library/debian", "kiln-test/pg") on `registry`
/// (host[:port]). Checks the names; contacts nothing until the first call.
Result<std::unique_ptr<BlobSource>> make_registry_source(const std::string& registry, const std::string& repository,
                                                         const RegistryOptions& options);

}  // namespace kiln::image
