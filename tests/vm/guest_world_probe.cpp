// Run inside a kiln guest by guest_world_test.cpp: is the guest the system ordinary test
// programs expect (localhost, a loopback server, users, hostname, /tmp, /dev/shm, UTC)?
// Prints "ok CHECK" or "FAIL CHECK: why" per check and exits 1 if any failed.
// Dynamically linked on purpose: glibc's NSS, getaddrinfo and time zone code are what
// real test programs run, and kiln ships this program with its libraries like any other.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <grp.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <set>
#include <string>

namespace {

int failures = 0;

void check(const std::string& name, bool ok, const std::string& why = "") {
  if (ok) {
    std::printf("ok %s\n", name.c_str());
  } else {
    std::printf("FAIL %s: %s\n", name.c_str(), why.c_str());
    ++failures;
  }
}

std::string err(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

std::string numeric(const sockaddr* sa, socklen_t len) {
  char host[NI_MAXHOST];
  if (getnameinfo(sa, len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) return "?";
  return host;
}

// The numeric addresses getaddrinfo gives for `node`, or the error as "error: ...".
std::set<std::string> resolve(const char* node, int family, int flags, std::string* error) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags;
  addrinfo* res = nullptr;
  std::set<std::string> out;
  if (int rc = getaddrinfo(node, nullptr, &hints, &res); rc != 0) {
    *error = gai_strerror(rc);
    return out;
  }
  for (addrinfo* ai = res; ai; ai = ai->ai_next) out.insert(numeric(ai->ai_addr, ai->ai_addrlen));
  freeaddrinfo(res);
  return out;
}

std::string joined(const std::set<std::string>& s) {
  std::string out;
  for (const auto& a : s) out += (out.empty() ? "" : " ") + a;
  return "{" + out + "}";
}

void check_localhost_resolves() {
  struct Family {
    int family;
    const char* name;
    std::set<std::string> expected;
  };
  const Family families[] = {{AF_UNSPEC, "AF_UNSPEC", {"127.0.0.1", "::1"}},
                             {AF_INET, "AF_INET", {"127.0.0.1"}},
                             {AF_INET6, "AF_INET6", {"::1"}}};
  for (const Family& f : families) {
    for (int flags : {0, AI_ADDRCONFIG}) {
      std::string error;
      auto got = resolve("localhost", f.family, flags, &error);
      std::string name = std::string("resolve localhost ") + f.name + (flags ? " AI_ADDRCONFIG" : "");
      check(name, got == f.expected, error.empty() ? "got " + joined(got) + ", want " + joined(f.expected) : error);
    }
  }
}

// A listening socket on `address` (numeric, either family) at `port` (0: any), or -1.
int listen_on(const char* address, uint16_t port, uint16_t* bound_port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* res = nullptr;
  if (getaddrinfo(address, std::to_string(port).c_str(), &hints, &res) != 0) return -1;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool ok = fd >= 0 && bind(fd, res->ai_addr, res->ai_addrlen) == 0 && listen(fd, 8) == 0;
  freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  // SAFETY: sockaddr_storage is large enough for any address getsockname writes.
  if (ok && getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    *bound_port = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                                : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return fd;
  }
  if (fd >= 0) close(fd);
  return -1;
}

// One HTTP exchange, as loopback HTTP tests do it, in one thread: the kernel queues the
// connection and the request on the listener, so the server side answers after the fact.
std::string fetch(const addrinfo* to, int listener) {
  int client = socket(to->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (client < 0) return err("socket");
  timeval limit{10, 0};  // a failure detector only: loopback answers at once
  setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  std::string result;
  const std::string request = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
  pollfd pending{listener, POLLIN, 0};
  if (connect(client, to->ai_addr, to->ai_addrlen) != 0) {
    result = err("connect");
  } else if (send(client, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    result = err("send");
  } else if (poll(&pending, 1, 10'000) != 1) {
    result = "the server never saw the connection";
  } else {
    int served = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    char buf[512];
    ssize_t n = served < 0 ? -1 : recv(served, buf, sizeof buf, 0);
    const std::string response = "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    if (n > 0 && std::string(buf, static_cast<size_t>(n)).starts_with("GET / "))
      send(served, response.data(), response.size(), MSG_NOSIGNAL);
    if (served >= 0) close(served);
    while ((n = recv(client, buf, sizeof buf, 0)) > 0) result.append(buf, static_cast<size_t>(n));
  }
  close(client);
  return result;
}

bool fetched(const std::string& reply) { return reply.starts_with("HTTP/1.0 200 OK") && reply.ends_with("\r\nhello"); }

void check_loopback_server() {
  // A server on localhost: both loopback addresses, one port (the guest is fresh: it is free).
  uint16_t port = 0, port4 = 0;
  int listen6 = listen_on("::1", 0, &port);
  int listen4 = listen6 < 0 ? -1 : listen_on("127.0.0.1", port, &port4);
  check("listen on localhost", listen6 >= 0 && listen4 >= 0, err("bind/listen on ::1 and 127.0.0.1"));
  if (listen6 < 0 || listen4 < 0) return;

  // The client resolves "localhost" as HTTP clients do (AI_ADDRCONFIG) and fetches from each address.
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  int rc = getaddrinfo("localhost", std::to_string(port).c_str(), &hints, &res);
  check("resolve localhost for the client", rc == 0, rc ? gai_strerror(rc) : "");
  std::set<std::string> served;
  for (addrinfo* ai = rc == 0 ? res : nullptr; ai; ai = ai->ai_next) {
    std::string address = numeric(ai->ai_addr, ai->ai_addrlen);
    std::string reply = fetch(ai, ai->ai_family == AF_INET ? listen4 : listen6);
    check("fetch from localhost at " + address, fetched(reply), "got '" + reply + "'");
    if (fetched(reply)) served.insert(address);
  }
  if (res) freeaddrinfo(res);
  check("fetched over 127.0.0.1 and ::1", served == std::set<std::string>{"127.0.0.1", "::1"},
        "fetched over " + joined(served));
  close(listen4);
  close(listen6);
}

void check_users() {
  passwd* root = getpwuid(0);
  check("getpwuid(0) is root", root && std::string(root->pw_name) == "root" && std::string(root->pw_dir) == "/root",
        root ? std::string("got ") + root->pw_name + " " + root->pw_dir : "no entry");
  passwd* nobody = getpwnam("nobody");
  check("getpwnam(nobody)", nobody && nobody->pw_uid == 65534 && nobody->pw_gid == 65534,
        nobody ? "uid " + std::to_string(nobody->pw_uid) : "no entry");
  group* root_group = getgrgid(0);
  check("getgrgid(0) is root", root_group && std::string(root_group->gr_name) == "root", "no such group");
  group* nogroup = getgrnam("nogroup");
  check("getgrnam(nogroup)", nogroup && nogroup->gr_gid == 65534, "no such group");
}

void check_hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  gethostname(name, sizeof name - 1);
  std::string file;
  std::getline(std::ifstream("/etc/hostname"), file);
  check("gethostname is /etc/hostname", !file.empty() && file == name, "gethostname '" + std::string(name) +
                                                                           "', /etc/hostname '" + file + "'");
  for (int flags : {0, AI_ADDRCONFIG}) {
    std::string error;
    auto got = resolve(name, AF_UNSPEC, flags, &error);
    check(std::string("resolve the hostname") + (flags ? " AI_ADDRCONFIG" : ""), !got.empty(), error);
  }
}

void check_interfaces() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return check("getifaddrs", false, err("getifaddrs"));
  std::set<std::string> loopback, other4, other6;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || !(i->ifa_flags & IFF_UP)) continue;
    int family = i->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    std::string address = numeric(i->ifa_addr, len);
    if (i->ifa_flags & IFF_LOOPBACK)
      loopback.insert(address);
    else if (family == AF_INET && address.starts_with("10."))
      other4.insert(address);
    else if (family == AF_INET6 && (address.starts_with("fc") || address.starts_with("fd")))
      other6.insert(address);
  }
  freeifaddrs(list);
  check("lo up with 127.0.0.1 and ::1", loopback == std::set<std::string>{"127.0.0.1", "::1"}, joined(loopback));
  check("a private IPv4 address off loopback", !other4.empty(), "none in 10.0.0.0/8 on an interface that is up");
  check("a private IPv6 address off loopback", !other6.empty(), "none in fc00::/7 on an interface that is up");

  // No route off the machine: a UDP connect() only looks the route up, it sends nothing.
  for (const char* outside : {"192.0.2.1", "2001:db8::1"}) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST;
    addrinfo* res = nullptr;
    if (getaddrinfo(outside, "9", &hints, &res) != 0) continue;
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : connect(fd, res->ai_addr, res->ai_addrlen);
    int saved = errno;
    check(std::string("no route to ") + outside, rc != 0 && saved == ENETUNREACH,
          rc == 0 ? "connect() found a route" : std::strerror(saved));
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
  }
}

void check_world_writable(const char* dir) {
  struct stat st {};
  bool ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 01777;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%o", st.st_mode & 07777);
  check(std::string(dir) + " is sticky and world-writable", ok, std::string("mode ") + mode);
}

void check_tmp_and_shm() {
  check_world_writable("/tmp");
  char path[] = "/tmp/guest-world-XXXXXX";
  int fd = mkstemp(path);
  bool written = fd >= 0 && write(fd, "x", 1) == 1;
  check("write a file in /tmp", written, err("mkstemp/write"));
  if (fd >= 0) {
    close(fd);
    unlink(path);
  }

  check_world_writable("/dev/shm");
  const char* name = "/kiln-guest-world";
  int shm = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
  void* map = MAP_FAILED;
  if (shm >= 0 && ftruncate(shm, 4096) == 0) map = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
  bool ok = map != MAP_FAILED;
  if (ok) {
    std::memcpy(map, "shared", 7);
    ok = std::memcmp(map, "shared", 7) == 0;
    munmap(map, 4096);
  }
  check("shm_open, ftruncate and mmap", ok, err("shm_open/ftruncate/mmap"));
  if (shm >= 0) {
    close(shm);
    shm_unlink(name);
  }
}

void check_utc() {
  time_t now = time(nullptr);
  tm local{};
  localtime_r(&now, &local);
  const char* tz = getenv("TZ");
  check("localtime is UTC", local.tm_gmtoff == 0 && local.tm_zone && std::string(local.tm_zone) == "UTC",
        std::string("zone '") + (local.tm_zone ? local.tm_zone : "") + "', offset " +
            std::to_string(local.tm_gmtoff) + ", TZ " + (tz ? tz : "unset"));
}

}  // namespace

int main(int argc, char** argv) {
  // image_test.cpp: which glibc this program runs with (its own, shipped with it, even
  // in an image whose libc is another).
  if (argc == 2 && std::string(argv[1]) == "libc-version") {
    std::printf("%s\n", gnu_get_libc_version());
    return 0;
  }
  check_localhost_resolves();
  check_loopback_server();
  check_users();
  check_hostname();
  check_interfaces();
  check_tmp_and_shm();
  check_utc();
  std::printf("%d failed\n", failures);
  return failures == 0 ? 0 : 1;
}
