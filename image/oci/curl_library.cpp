#include "image/oci/curl_library.h"

#include <dlfcn.h>

#include <mutex>

namespace kiln::image::curl {
namespace {

constexpr const char* kSoname = "libcurl.so.4";

// Resolve `name` into `fn`; false (and `missing` set) when the library lacks it.
template <typename Fn>
bool resolve(void* handle, const char* name, Fn& fn, std::string& missing) {
  fn = reinterpret_cast<Fn>(::dlsym(handle, name));
  if (!fn && missing.empty()) missing = name;
  return fn != nullptr;
}

Result<Library> load() {
  // RTLD_LOCAL: libcurl's symbols (and its libraries') stay out of kiln's global scope.
  void* handle = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = ::dlerror();
    return make_error("cannot load {} for HTTP: {}; install libcurl4 (Debian: apt-get install libcurl4)", kSoname,
                      why ? why : "unknown error");
  }
  Library lib{};
  std::string missing;
  resolve(handle, "curl_global_init", lib.global_init, missing);
  resolve(handle, "curl_easy_init", lib.easy_init, missing);
  resolve(handle, "curl_easy_setopt", lib.easy_setopt, missing);
  resolve(handle, "curl_easy_getinfo", lib.easy_getinfo, missing);
  resolve(handle, "curl_easy_perform", lib.easy_perform, missing);
  resolve(handle, "curl_easy_cleanup", lib.easy_cleanup, missing);
  resolve(handle, "curl_easy_strerror", lib.easy_strerror, missing);
  resolve(handle, "curl_easy_escape", lib.easy_escape, missing);
  resolve(handle, "curl_slist_append", lib.slist_append, missing);
  resolve(handle, "curl_slist_free_all", lib.slist_free_all, missing);
  resolve(handle, "curl_url", lib.url, missing);
  resolve(handle, "curl_url_set", lib.url_set, missing);
  resolve(handle, "curl_url_get", lib.url_get, missing);
  resolve(handle, "curl_url_cleanup", lib.url_cleanup, missing);
  resolve(handle, "curl_free", lib.free, missing);
  resolve(handle, "curl_getdate", lib.getdate, missing);
  if (!missing.empty()) {
    ::dlclose(handle);
    return make_error("{} has no {}: it is older than the libcurl kiln was built with; upgrade libcurl4", kSoname,
                      missing);
  }
  if (CURLcode code = lib.global_init(CURL_GLOBAL_DEFAULT); code != CURLE_OK)
    return make_error("libcurl could not initialize: {}", lib.easy_strerror(code));
  return lib;  // the handle stays open for the life of the process
}

}  // namespace

Result<const Library*> library() {
  static std::once_flag once;
  static Result<Library> loaded = make_error("libcurl was not loaded");
  std::call_once(once, [] { loaded = load(); });
  if (!loaded) return loaded.error();
  return &*loaded;
}

}  // namespace kiln::image::curl
