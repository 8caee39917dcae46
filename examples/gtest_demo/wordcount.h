#pragma once
#include <cstddef>
#include <istream>
#include <string_view>

std::size_t count_words(std::string_view text);
std::size_t count_words(std::istream& in);
