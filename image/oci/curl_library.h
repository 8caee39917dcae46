// libcurl, loaded the first time kiln talks HTTP (dlopen of libcurl.so.4, the soname of
// Debian's libcurl4) instead of by the dynamic loader at every start. libcurl brings
// about 25 libraries of its own (TLS, Kerberos, LDAP, IDN, SSH...): mapping and
// relocating them took 3.6 of the 6.4 ms a `kiln --version` takes here, a cost every
// `kiln run` paid although a run from a cached snapshot never opens a connection.
#pragma once

#include "common/result.h"

#include <curl/curl.h>

namespace kiln::image::curl {

/// The libcurl functions kiln calls, with libcurl's own signatures.
struct Library {
  decltype(&::curl_global_init) global_init;
  decltype(&::curl_easy_init) easy_init;
  decltype(&::curl_easy_setopt) easy_setopt;
  decltype(&::curl_easy_getinfo) easy_getinfo;
  decltype(&::curl_easy_perform) easy_perform;
  decltype(&::curl_easy_cleanup) easy_cleanup;
  decltype(&::curl_easy_strerror) easy_strerror;
  decltype(&::curl_easy_escape) easy_escape;
  decltype(&::curl_slist_append) slist_append;
  decltype(&::curl_slist_free_all) slist_free_all;
  decltype(&::curl_url) url;
  decltype(&::curl_url_set) url_set;
  decltype(&::curl_url_get) url_get;
  decltype(&::curl_url_cleanup) url_cleanup;
  decltype(&::curl_free) free;
  decltype(&::curl_getdate) getdate;
};

/// libcurl, loaded and globally initialized on the first call (thread-safe), or an error
/// naming the library and what to install. Loaded once; later calls return the same.
Result<const Library*> library();

}  // namespace kiln::image::curl
