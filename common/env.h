// kiln's on/off environment switches (KILN_NO_LAYERS, KILN_NO_POOL, KILN_KEEP_FAILED):
// one reading for all of them.
#pragma once

#include <cstdlib>
#include <cstring>

namespace kiln {

/// True when `name` is set to anything but "" or "0".
inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

}  // namespace kiln
