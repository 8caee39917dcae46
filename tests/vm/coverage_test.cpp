// Coverage of a program built with gcc --coverage: its runs in microVMs count in the
// host's .gcda exactly as runs on the host do — also two runs at once, which kiln
// merges under libgcov's own lock.
#include "vm_test_support.h"

#include "common/fs.h"
#include "common/subprocess.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

using namespace kiln::vmtest;
namespace stdfs = std::filesystem;

namespace {

std::string run_in(const stdfs::path& dir, const std::string& script) {
  auto r = kiln::run_captured({"sh", "-c", "cd \"$0\" && " + script, dir.string()});
  EXPECT_TRUE(r.ok());
  if (!r.ok()) return "";
  EXPECT_EQ(r->exit_code, 0) << script << "\n" << r->err;
  return r->out;
}

}  // namespace

TEST(Coverage, RunsInMicroVmsCountAsRunsOnTheHostAndParallelRunsAddUp) {
  auto tmp = kiln::fs::TempDir::create(stdfs::temp_directory_path(), "kiln-vm-coverage-");
  ASSERT_TRUE(tmp.ok());
  const stdfs::path dir = tmp->path();
  std::ofstream(dir / "cov.c") << "#include <stdio.h>\n#include <string.h>\n"
                                  "int main(int argc, char** argv) {\n"
                                  "  if (argc > 1 && strcmp(argv[1], \"a\") == 0) {\n"
                                  "    puts(\"a\");\n"
                                  "    return 0;\n"
                                  "  }\n"
                                  "  for (int i = 0; i < 3; ++i) puts(\"b\");\n"
                                  "  return 0;\n"
                                  "}\n";
  run_in(dir, "gcc --coverage -O0 -c cov.c -o cov.o && gcc --coverage cov.o -o prog");

  // On the host: a, a, b.
  run_in(dir, "./prog a && ./prog a && ./prog b");
  const std::string host = run_in(dir, "gcov -t -o . cov.c");
  ASSERT_NE(host.find("Runs:3"), std::string::npos) << host;
  stdfs::remove(dir / "cov.gcda");

  // In microVMs: the two a's at once, then b.
  const std::string prog = (dir / "prog").string();
  auto first = kiln::ChildProcess::spawn(kiln_argv({"run", "--", prog, "a"}, shared_cache()), {});
  auto second = kiln::ChildProcess::spawn(kiln_argv({"run", "--", prog, "a"}, shared_cache()), {});
  ASSERT_TRUE(first.ok() && second.ok());
  const int status_first = first->wait(), status_second = second->wait();
  EXPECT_TRUE(WIFEXITED(status_first) && WEXITSTATUS(status_first) == 0);
  EXPECT_TRUE(WIFEXITED(status_second) && WEXITSTATUS(status_second) == 0);
  auto b = run_kiln({"run", "--", prog, "b"});
  EXPECT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(run_in(dir, "gcov -t -o . cov.c"), host) << "line counts differ from the same runs on the host";
}
