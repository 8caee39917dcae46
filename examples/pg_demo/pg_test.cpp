// Each case runs in its own microVM restored from the fixture snapshot in which the
// image's PostgreSQL is running with the schema of schema.sql. The cases talk to it
// through the image's own psql (a child process of this host-built executable).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace {

// Runs `sql` with the image's psql as the current user (postgres) and returns its
// unaligned, tuples-only output; fails the test on a non-zero exit.
std::string psql(const std::string& sql) {
  const std::string command = "psql -X -q -tA -v ON_ERROR_STOP=1 -c \"" + sql + "\" 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "popen failed";
    return {};
  }
  std::string out;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  const int status = ::pclose(pipe);
  EXPECT_EQ(status, 0) << command << "\n" << out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(Schema, TheSetupsRowIsThere) { EXPECT_EQ(psql("SELECT name FROM items ORDER BY id"), "seeded"); }

TEST(Schema, TheServerIsTheImagesPostgres15) {
  EXPECT_EQ(psql("SHOW server_version_num").substr(0, 2), "15");
}

// Both write the same unique name: in one shared database the second would fail.
// Each sees exactly the seeded row plus its own.
TEST(Isolation, WriterA) {
  psql("INSERT INTO items (name) VALUES ('written by a test')");
  EXPECT_EQ(psql("SELECT count(*) FROM items"), "2");
}

TEST(Isolation, WriterB) {
  psql("INSERT INTO items (name) VALUES ('written by a test')");
  EXPECT_EQ(psql("SELECT count(*) FROM items"), "2");
}

TEST(Isolation, AReaderSeesNoTestsWrites) {
  EXPECT_EQ(psql("SELECT count(*) FROM items WHERE name <> 'seeded'"), "0");
}

}  // namespace
