#pragma once
#include <string>

// "in a microVM" in a kiln guest, else "on the host".
std::string where_am_i();
