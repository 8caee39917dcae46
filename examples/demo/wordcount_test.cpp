#include "wordcount.h"

#include <cstdio>
#include <fstream>

#define CHECK(cond)                                          \
  do {                                                       \
    if (!(cond)) {                                           \
      std::fprintf(stderr, "FAILED: %s (line %d)\n", #cond, __LINE__); \
      return 1;                                              \
    }                                                        \
  } while (0)

int main(int argc, char** argv) {
  if (argc == 2) {
    std::ifstream in(argv[1]);
    CHECK(in.good());
    std::size_t n = count_words(in);
    std::printf("%s has %zu words\n", argv[1], n);
    CHECK(n == 9);
    return 0;
  }
  CHECK(count_words("") == 0);
  CHECK(count_words("one") == 1);
  CHECK(count_words("  two words ") == 2);
  CHECK(count_words("tabs\tand\nnewlines") == 3);
  std::printf("wordcount: all checks passed\n");
  return 0;
}
