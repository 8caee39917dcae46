#include "resp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace demo {

RespClient::RespClient(const std::string& host, int port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) throw std::runtime_error("bad address " + host);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("connect to " + host + ":" + std::to_string(port) + ": " + std::strerror(errno));
}

RespClient::~RespClient() {
  if (fd_ >= 0) ::close(fd_);
}

Reply RespClient::command(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  for (size_t sent = 0; sent < out.size();) {
    ssize_t n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }
  return read_reply();
}

void RespClient::receive_more() {
  char chunk[4096];
  ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
  if (got <= 0) throw std::runtime_error("the server closed the connection");
  buffer_.append(chunk, static_cast<size_t>(got));
}

std::string RespClient::read_exact(size_t n) {
  while (buffer_.size() < n) receive_more();
  std::string head = buffer_.substr(0, n);
  buffer_.erase(0, n);
  return head;
}

std::string RespClient::read_line() {
  size_t end;
  while ((end = buffer_.find("\r\n")) == std::string::npos) receive_more();
  std::string line = buffer_.substr(0, end);
  buffer_.erase(0, end + 2);
  return line;
}

Reply RespClient::read_reply(int depth) {
  if (depth > 8) throw std::runtime_error("reply nested too deeply");
  std::string line = read_line();
  if (line.empty()) throw std::runtime_error("empty reply line");
  Reply r;
  const std::string rest = line.substr(1);
  switch (line[0]) {
    case '+': r.kind = Reply::Kind::status; r.text = rest; break;
    case '-': r.kind = Reply::Kind::error; r.text = rest; break;
    case ':': r.kind = Reply::Kind::integer; r.integer = std::stoll(rest); break;
    case '$': {
      long long len = std::stoll(rest);
      if (len < 0) break;  // nil
      r.kind = Reply::Kind::bulk;
      r.text = read_exact(static_cast<size_t>(len) + 2).substr(0, static_cast<size_t>(len));
      break;
    }
    case '*': {
      long long count = std::stoll(rest);
      if (count < 0) break;
      r.kind = Reply::Kind::array;
      for (long long i = 0; i < count; ++i) r.elements.push_back(read_reply(depth + 1));
      break;
    }
    default: throw std::runtime_error("not a RESP reply: " + line);
  }
  return r;
}

}  // namespace demo
