// Reads its data the way many suites do: relative to its working directory (the
// source directory, set with add_test(... WORKING_DIRECTORY)), writes a scratch
// file next to the data, and reads a file configure_file() put in the build tree.
#include "where.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace {

bool read_file(const std::string& path, std::string& text) {
  std::ifstream in(path);
  if (!in) return false;
  text.assign(std::istreambuf_iterator<char>(in), {});
  return true;
}

int fail(const std::string& what) {
  std::fprintf(stderr, "reads_trees: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return fail("usage: reads_trees <configured file in the build tree>");
  std::string words;
  if (!read_file("data/words.txt", words)) return fail("Error opening test file data/words.txt");
  std::istringstream count(words);
  size_t n = std::distance(std::istream_iterator<std::string>(count), {});
  if (n != 4) return fail("data/words.txt has " + std::to_string(n) + " words, expected 4");

  // A write next to the data: seen by this test, never by the host (under kiln).
  {
    std::ofstream out("data/scratch.txt");
    out << "scratch written by the test\n";
    if (!out) return fail("cannot write data/scratch.txt");
  }
  std::string scratch;
  if (!read_file("data/scratch.txt", scratch) || scratch != "scratch written by the test\n")
    return fail("data/scratch.txt does not read back what was written");
  if (where_am_i() == "on the host") std::remove("data/scratch.txt");

  std::string configured;
  if (!read_file(argv[1], configured) || configured.find("configured_by=cmake") == std::string::npos)
    return fail("cannot read the configured file " + std::string(argv[1]));
  std::printf("reads_trees: %s: read data/words.txt (%zu words) and %s, wrote data/scratch.txt\n",
              where_am_i().c_str(), n, argv[1]);
  return 0;
}
