#include "where.h"

#include <cstdio>

int main(int, char** argv) {
  std::printf("%s: %s\n", argv[0], where_am_i().c_str());
  return 0;
}
