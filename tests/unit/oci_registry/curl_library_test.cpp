// libcurl loaded on first use (image/oci/curl_library.h): every function kiln calls is
// there, and the same loaded library comes back on every call.
#include "image/oci/curl_library.h"

#include <gtest/gtest.h>

namespace curl = kiln::image::curl;

TEST(CurlLibrary, LoadsOnceWithEveryFunction) {
  auto lib = curl::library();
  ASSERT_TRUE(lib.ok()) << lib.error().message;
  const curl::Library& l = **lib;
  for (const void* fn : {reinterpret_cast<const void*>(l.global_init), reinterpret_cast<const void*>(l.easy_init),
                         reinterpret_cast<const void*>(l.easy_setopt), reinterpret_cast<const void*>(l.easy_getinfo),
                         reinterpret_cast<const void*>(l.easy_perform), reinterpret_cast<const void*>(l.easy_cleanup),
                         reinterpret_cast<const void*>(l.easy_strerror), reinterpret_cast<const void*>(l.easy_escape),
                         reinterpret_cast<const void*>(l.slist_append), reinterpret_cast<const void*>(l.slist_free_all),
                         reinterpret_cast<const void*>(l.url), reinterpret_cast<const void*>(l.url_set),
                         reinterpret_cast<const void*>(l.url_get), reinterpret_cast<const void*>(l.url_cleanup),
                         reinterpret_cast<const void*>(l.free), reinterpret_cast<const void*>(l.getdate)})
    EXPECT_NE(fn, nullptr);
  EXPECT_EQ(curl::library().value(), *lib) << "loaded twice";
  // The loaded library works: escape a string through it.
  char* e = l.easy_escape(nullptr, "a b", 3);
  ASSERT_NE(e, nullptr);
  EXPECT_STREQ(e, "a%20b");
  l.free(e);
}
