// libFuzzer: the WWW-Authenticate parser (image/oci/www_authenticate) on any bytes a
// registry could send. It must return (a value or an error), within its bounds.
#include "image/oci/www_authenticate.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view header(reinterpret_cast<const char*>(data), size);
  auto challenges = kiln::image::parse_www_authenticate(header);
  if (challenges) {
    if (challenges->empty() || challenges->size() > kiln::image::kMaxAuthChallenges) std::abort();
    for (const auto& c : *challenges) {
      if (c.scheme.empty() || c.params.size() > kiln::image::kMaxAuthParams) std::abort();
      (void)c.param("realm");
    }
  }
  return 0;
}
