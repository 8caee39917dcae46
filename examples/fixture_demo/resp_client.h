// A tiny Redis client (RESP2 over TCP), enough for the demo's tests; no dependency.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace demo {

/// One reply: a status or bulk string, an integer, an error, nil, or an array of those.
struct Reply {
  enum class Kind { status, error, integer, bulk, nil, array } kind = Kind::nil;
  std::string text;  ///< status, error and bulk
  long long integer = 0;
  std::vector<Reply> elements;
};

class RespClient {
 public:
  /// Connect to host:port (IPv4). Throws std::runtime_error if it cannot.
  RespClient(const std::string& host, int port);
  ~RespClient();
  RespClient(const RespClient&) = delete;
  RespClient& operator=(const RespClient&) = delete;

  /// Send one command (e.g. {"SET", "k", "v"}) and read its reply. Throws on I/O errors.
  Reply command(const std::vector<std::string>& args);

 private:
  void receive_more();
  std::string read_line();
  std::string read_exact(size_t n);
  Reply read_reply(int depth = 0);
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace demo
