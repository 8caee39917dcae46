// Parsing follows the distribution reference grammar (github.com/distribution/reference,
// reference.go) and Docker's normalisation (normalize.go): the first path component is a
// registry host only if it has a '.' or a ':' or is "localhost"; Docker Hub names get
// "docker.io" and, with one component, "library/".
#include "image/oci/reference.h"

#include "common/sha256.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace kiln::image {
namespace {

constexpr std::string_view kOciPrefix = "oci:";
constexpr std::string_view kArchivePrefix = "docker-archive:";
constexpr std::string_view kDockerHub = "docker.io";
constexpr size_t kMaxNameLength = 255;   // distribution's NameTotalLengthMax
constexpr size_t kMaxTagLength = 128;
constexpr size_t kMaxReferenceLength = 4096;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | [-]+
bool is_path_component(std::string_view c) {
  if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) return false;
  for (size_t i = 0; i < c.size();) {
    if (is_lower_alnum(c[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < c.size() && !is_lower_alnum(c[j])) ++j;
    std::string_view sep = c.substr(i, j - i);
    bool dashes = std::all_of(sep.begin(), sep.end(), [](char x) { return x == '-'; });
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) return false;
    i = j;
  }
  return true;
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool is_domain_component(std::string_view c) {
  if (c.empty() || !is_alnum(c.front()) || !is_alnum(c.back())) return false;
  return std::all_of(c.begin(), c.end(), [](char x) { return is_alnum(x) || x == '-'; });
}

bool is_port(std::string_view p) {
  if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), [](char x) { return x >= '0' && x <= '9'; }))
    return false;
  int v = std::stoi(std::string(p));
  return v >= 1 && v <= 65535;
}

Result<void> check_registry(std::string_view host_port) {
  std::string_view host = host_port, port;
  if (!host.empty() && host.front() == '[') {  // [IPv6]:port
    size_t close = host.find(']');
    if (close == std::string_view::npos) return make_error("registry '{}': unclosed '[' in IPv6 address", host_port);
    std::string_view inner = host.substr(1, close - 1);
    if (inner.empty() || !std::all_of(inner.begin(), inner.end(), [](char x) {
          return std::isxdigit(static_cast<unsigned char>(x)) || x == ':' || x == '.';
        }))
      return make_error("registry '{}': not an IPv6 address", host_port);
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !is_port(rest.substr(1))))
      return make_error("registry '{}': a port is ':' and a number 1-65535", host_port);
    return {};
  }
  if (size_t colon = host.find(':'); colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
    if (!is_port(port)) return make_error("registry '{}': port '{}' is not a number 1-65535", host_port, port);
  }
  for (auto c : split(host, '.'))
    if (!is_domain_component(c))
      return make_error("registry '{}': '{}' is not a valid host name part (letters, digits, inner '-')",
                        host_port, c);
  return {};
}

Result<void> check_tag(std::string_view tag) {
  bool ok = !tag.empty() && tag.size() <= kMaxTagLength && (is_alnum(tag[0]) || tag[0] == '_') &&
            std::all_of(tag.begin(), tag.end(), [](char x) { return is_alnum(x) || x == '_' || x == '.' || x == '-'; });
  if (!ok)
    return make_error("tag '{}' is not valid: 1-128 of letters, digits, '_', '.', '-', not starting with '.' or '-'",
                      tag);
  return {};
}

Result<void> check_digest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return make_error("digest '{}' is not ALGORITHM:HEX (e.g. sha256:<64 hex digits>)", digest);
  if (digest.substr(0, colon) != "sha256")
    return make_error("digest '{}': only sha256 digests are supported", digest);
  if (!is_sha256_digest(digest))
    return make_error("digest '{}': sha256 takes exactly 64 lowercase hex digits", digest);
  return {};
}

Result<Reference> parse_registry_reference(std::string_view text) {
  Reference ref;
  std::string_view rest = text;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    KILN_TRY(check_digest(ref.digest));
  }
  size_t last_colon = rest.rfind(':');
  size_t last_slash = rest.rfind('/');
  if (last_colon != std::string_view::npos && (last_slash == std::string_view::npos || last_colon > last_slash)) {
    ref.tag = std::string(rest.substr(last_colon + 1));
    rest = rest.substr(0, last_colon);
    KILN_TRY(check_tag(ref.tag));
  }
  if (rest.empty()) return make_error("no image name (write NAME[:TAG] or REGISTRY/NAME[:TAG])");
  std::string_view repo = rest;
  size_t first_slash = rest.find('/');
  if (first_slash != std::string_view::npos) {
    std::string_view first = rest.substr(0, first_slash);
    if (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
        first == "localhost") {
      KILN_TRY(check_registry(first));
      ref.registry = std::string(first);
      repo = rest.substr(first_slash + 1);
    }
  }
  if (ref.registry.empty() || ref.registry == "index.docker.io" || ref.registry == "registry-1.docker.io")
    ref.registry = std::string(kDockerHub);
  if (repo.empty()) return make_error("a registry but no repository name after it");
  for (auto c : split(repo, '/')) {
    if (is_path_component(c)) continue;
    if (std::any_of(c.begin(), c.end(), [](char x) { return x >= 'A' && x <= 'Z'; }))
      return make_error("repository '{}' must be lowercase", repo);
    return make_error(
        "repository '{}': '{}' is not a valid path component (lowercase letters and digits, "
        "separated by '.', '_', '__' or dashes)",
        repo, c);
  }
  ref.repository = std::string(repo);
  if (ref.registry == kDockerHub && ref.repository.find('/') == std::string::npos)
    ref.repository = "library/" + ref.repository;
  if (ref.registry.size() + 1 + ref.repository.size() > kMaxNameLength)
    return make_error("the name is longer than {} characters", kMaxNameLength);
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

std::filesystem::path absolute_path(std::string_view p) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(std::filesystem::path(p), ec);
  return (ec ? std::filesystem::path(p) : abs).lexically_normal();
}

// oci:PATH[:tag]: the part after the last ':' is the tag when it is a valid tag (a
// directory whose name has a ':' followed by tag characters needs an explicit ":tag").
Result<Reference> parse_oci_reference(std::string_view text) {
  std::string_view rest = text.substr(kOciPrefix.size());
  Reference ref;
  ref.kind = ReferenceKind::oci_layout;
  if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    std::string_view tag = rest.substr(colon + 1);
    if (tag.find('/') == std::string_view::npos) {
      KILN_TRY(check_tag(tag));
      ref.tag = std::string(tag);
      rest = rest.substr(0, colon);
    }
  }
  if (rest.empty()) return make_error("'{}': oci: needs a directory (oci:PATH[:tag])", text);
  ref.path = absolute_path(rest);
  return ref;
}

Result<Reference> parse_archive_reference(std::string_view text) {
  std::string_view rest = text.substr(kArchivePrefix.size());
  if (rest.empty()) return make_error("'{}': docker-archive: needs a file (docker-archive:FILE)", text);
  Reference ref;
  ref.kind = ReferenceKind::docker_archive;
  ref.path = absolute_path(rest);
  return ref;
}

}  // namespace

Result<Reference> parse_reference(std::string_view text) {
  if (text.empty()) return make_error("empty image reference");
  if (text.size() > kMaxReferenceLength)
    return make_error("image reference is {} characters long; at most {} are accepted", text.size(),
                      kMaxReferenceLength);
  if (std::any_of(text.begin(), text.end(), [](char c) { return std::iscntrl(static_cast<unsigned char>(c)); }))
    return make_error("image reference contains a control character");
  if (text.substr(0, kOciPrefix.size()) == kOciPrefix) return parse_oci_reference(text);
  if (text.substr(0, kArchivePrefix.size()) == kArchivePrefix) return parse_archive_reference(text);
  if (std::any_of(text.begin(), text.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); }))
    return make_error("image reference '{}' contains white space", text);
  auto ref = parse_registry_reference(text);
  if (!ref) return with_context(fmt::format("image reference '{}'", text), ref.error());
  return ref;
}

std::string Reference::canonical() const {
  switch (kind) {
    case ReferenceKind::oci_layout:
      return "oci:" + path.string() + (tag.empty() ? "" : ":" + tag);
    case ReferenceKind::docker_archive:
      return "docker-archive:" + path.string();
    case ReferenceKind::registry:
      break;
  }
  std::string out = registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

std::string Reference::manifest_reference() const { return digest.empty() ? tag : digest; }

}  // namespace kiln::image
