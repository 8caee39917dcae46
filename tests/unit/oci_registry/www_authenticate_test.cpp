#include "image/oci/www_authenticate.h"

#include <gtest/gtest.h>

namespace kiln::image {
namespace {

TEST(WwwAuthenticate, DockerHubBearer) {
  auto c = parse_www_authenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull")");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].scheme, "bearer");
  EXPECT_EQ((*c)[0].param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ((*c)[0].param("service"), "registry.docker.io");
  EXPECT_EQ((*c)[0].param("scope"), "repository:library/debian:pull");
  EXPECT_EQ((*c)[0].param("absent"), "");
}

TEST(WwwAuthenticate, BasicWithSpacesAndCaseInsensitiveNames) {
  auto c = parse_www_authenticate(R"(Basic  Realm = "my realm" , charset=UTF-8)");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].scheme, "basic");
  EXPECT_EQ((*c)[0].param("realm"), "my realm");
  EXPECT_EQ((*c)[0].param("charset"), "UTF-8");
}

TEST(WwwAuthenticate, QuotedStringEscapesAndCommas) {
  auto c = parse_www_authenticate(R"(Bearer realm="a\"b\\c,d",service=x)");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ((*c)[0].param("realm"), "a\"b\\c,d");
  EXPECT_EQ((*c)[0].param("service"), "x");
}

TEST(WwwAuthenticate, SeveralChallenges) {
  auto c = parse_www_authenticate(R"(Negotiate abc==, Basic realm="r", Bearer realm="t",service="s")");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->size(), 3u);
  EXPECT_EQ((*c)[0].scheme, "negotiate");
  EXPECT_EQ((*c)[0].token68, "abc==");
  EXPECT_EQ((*c)[1].scheme, "basic");
  EXPECT_EQ((*c)[1].param("realm"), "r");
  EXPECT_EQ((*c)[2].scheme, "bearer");
  EXPECT_EQ((*c)[2].param("service"), "s");
}

TEST(WwwAuthenticate, MalformedInputIsAnError) {
  for (const char* bad : {"", "   ", R"(Bearer realm="unterminated)", "Bearer a=b c=d", "Bearer realm=\"x\" junk",
                          "=x", "Bearer realm=\"a\"\"b\""}) {
    EXPECT_FALSE(parse_www_authenticate(bad)) << bad;
  }
}

TEST(WwwAuthenticate, BoundsAreEnforced) {
  EXPECT_FALSE(parse_www_authenticate("Bearer realm=\"" + std::string(kMaxAuthHeaderBytes, 'a') + "\""));
  std::string many = "Bearer ";
  for (size_t i = 0; i <= kMaxAuthParams; ++i) many += "p" + std::to_string(i) + "=v,";
  EXPECT_FALSE(parse_www_authenticate(many));
  std::string schemes;
  for (size_t i = 0; i <= kMaxAuthChallenges; ++i) schemes += "Basic realm=r, ";
  EXPECT_FALSE(parse_www_authenticate(schemes));
}

}  // namespace
}  // namespace kiln::image
