#include "tests/registry/registry_fixture.h"

#include "common/fs.h"

#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

namespace kiln::registry_test {

namespace {

const std::filesystem::path kSource = KILN_SOURCE_DIR;

Result<CapturedRun> run_ok(const std::vector<std::string>& argv) {
  KILN_ASSIGN_OR_RETURN(CapturedRun run, run_captured(argv));
  if (run.exit_code != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    return make_error("{}failed ({}): {}{}", cmd, run.exit_code, run.err, run.out);
  }
  return run;
}

std::string base64(const std::string& in) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 2]));
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? alphabet[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? alphabet[n & 63] : '=';
  }
  return out;
}

}  // namespace

std::string missing_tools(const std::vector<std::string>& tools) {
  std::vector<std::string> argv = {(kSource / "scripts/check-tools").string()};
  argv.insert(argv.end(), tools.begin(), tools.end());
  auto run = run_captured(argv);
  if (!run) return run.error().message;
  if (run->exit_code == 0) return {};
  return run->out + run->err;
}

Result<std::unique_ptr<Registry>> Registry::start(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {(kSource / "scripts/test-registry").string(), "--watch",
                                   std::to_string(::getpid())};
  argv.insert(argv.end(), args.begin(), args.end());
  KILN_ASSIGN_OR_RETURN(CapturedRun run, run_ok(argv));
  std::unique_ptr<Registry> r(new Registry());
  std::istringstream lines(run.out);
  for (std::string line; std::getline(lines, line);) {
    if (auto eq = line.find('='); eq != std::string::npos) r->info_[line.substr(0, eq)] = line.substr(eq + 1);
  }
  if (!r->info_.count("ADDR") || !r->info_.count("DIR")) {
    return make_error("scripts/test-registry printed no ADDR/DIR: {}", run.out);
  }
  return r;
}

Registry::~Registry() {
  (void)run_captured({(kSource / "scripts/test-registry").string(), "--stop", info_["DIR"]});
}

Result<std::filesystem::path> build_test_layout(const std::filesystem::path& dir) {
  std::filesystem::path files = dir / "files";
  KILN_TRY(fs::make_dirs(files / "etc"));
  KILN_TRY(fs::write_file_atomic(files / "etc/greeting", "hello from the test image\n"));
  // 300 KB that gzip cannot shrink much (a stall at 1000 bytes leaves most of it to resume).
  std::string data(300 * 1024, '\0');
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (char& c : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  KILN_TRY(fs::write_file_atomic(files / "blob.bin", data));
  std::filesystem::path layout = dir / "layout";
  std::string image = layout.string() + ":t";
  std::vector<std::string> rootless;
  if (::geteuid() != 0) rootless = {"--rootless"};
  auto umoci = [&](std::vector<std::string> args) -> Result<void> {
    std::vector<std::string> argv = {"umoci"};
    argv.insert(argv.end(), args.begin(), args.end());
    KILN_ASSIGN_OR_RETURN(CapturedRun run, run_ok(argv));
    return {};
  };
  KILN_TRY(umoci({"init", "--layout", layout.string()}));
  KILN_TRY(umoci({"new", "--image", image}));
  std::vector<std::string> insert1 = {"insert"};
  insert1.insert(insert1.end(), rootless.begin(), rootless.end());
  std::vector<std::string> insert2 = insert1;
  insert1.insert(insert1.end(), {"--image", image, (files / "etc").string(), "/etc"});
  insert2.insert(insert2.end(), {"--image", image, (files / "blob.bin").string(), "/data/blob.bin"});
  KILN_TRY(umoci(insert1));
  KILN_TRY(umoci(insert2));
  return layout;
}

Result<void> push(const std::filesystem::path& layout, const std::string& dest, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {"skopeo", "copy", "--quiet", "--dest-tls-verify=false"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("oci:" + layout.string() + ":t");
  argv.push_back("docker://" + dest);
  KILN_ASSIGN_OR_RETURN(CapturedRun run, run_ok(argv));
  return {};
}

Result<std::string> raw_manifest(const std::string& ref, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {"skopeo", "inspect", "--raw", "--tls-verify=false"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("docker://" + ref);
  KILN_ASSIGN_OR_RETURN(CapturedRun run, run_ok(argv));
  return run.out;
}

Result<std::unique_ptr<FaultProxy>> FaultProxy::start(const std::string& upstream,
                                                      const std::vector<std::string>& args,
                                                      const std::filesystem::path& scratch) {
  std::filesystem::path port_file = scratch / "fault-proxy.port";
  std::vector<std::string> argv = {"/usr/bin/python3", (kSource / "tests/registry/fault_proxy.py").string(),
                                   "--upstream", upstream, "--port-file", port_file.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  KILN_ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::spawn(argv, SpawnOptions{}));
  for (int i = 0; i < 200; ++i) {
    auto text = fs::read_file(port_file, 100);
    if (text && !text->empty()) {
      return std::unique_ptr<FaultProxy>(new FaultProxy(std::move(child), std::stoi(*text)));
    }
    int status = 0;
    if (child.poll_exited(&status)) return make_error("fault_proxy.py exited: {}", describe_wait_status(status));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return make_error("fault_proxy.py did not start within 10 s");
}

Result<nlohmann::json> FaultProxy::stats() const {
  KILN_ASSIGN_OR_RETURN(CapturedRun run, run_ok({"curl", "-s", "--noproxy", "*", "http://" + addr() + "/_fault/stats"}));
  auto doc = nlohmann::json::parse(run.out, nullptr, false);
  if (doc.is_discarded()) return make_error("fault proxy stats are not JSON: {}", run.out);
  return doc;
}

std::string auth_json(const std::string& registry, const std::string& user, const std::string& pass) {
  nlohmann::json doc;
  doc["auths"][registry]["auth"] = base64(user + ":" + pass);
  return doc.dump();
}

}  // namespace kiln::registry_test

#include "common/sha256.h"

#include <cstdlib>

namespace kiln::registry_test {

void RegistryTest::SetUp() {
  std::string missing = missing_tools({"docker-registry", "curl", "openssl", "htpasswd", "/usr/bin/python3",
                                       "/usr/lib/python3/dist-packages/cryptography", "skopeo", "umoci"});
  if (!missing.empty()) GTEST_SKIP() << "a tool the registry tests need is missing: " << missing;
  auto dir = fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-registry-test-");
  ASSERT_TRUE(dir) << dir.error().message;
  scratch_.emplace(std::move(*dir));
  auto layout = build_test_layout(scratch_->path() / "image");
  ASSERT_TRUE(layout) << layout.error().message;
  layout_ = *layout;
  set_auth("{}");
  ::setenv("NO_PROXY", "127.0.0.1,localhost", 1);
  ::setenv("no_proxy", "127.0.0.1,localhost", 1);
  ::unsetenv("KILN_INSECURE_REGISTRIES");
}

void RegistryTest::set_auth(const std::string& json) {
  std::filesystem::path file = scratch_->path() / "auth.json";
  ASSERT_TRUE(fs::write_file_atomic(file, json));
  ::setenv("REGISTRY_AUTH_FILE", file.c_str(), 1);
}

std::unique_ptr<image::BlobSource> RegistryTest::source(const std::string& registry, const std::string& repo,
                                                        const image::RegistryOptions& options) {
  auto src = image::make_registry_source(registry, repo, options);
  EXPECT_TRUE(src) << src.error().message;
  return src ? std::move(*src) : nullptr;
}

void RegistryTest::expect_blobs_verify(image::BlobSource& src, const std::string& bytes) {
  auto doc = nlohmann::json::parse(bytes);
  std::vector<nlohmann::json> descriptors = {doc["config"]};
  for (const auto& layer : doc["layers"]) descriptors.push_back(layer);
  for (const auto& d : descriptors) {
    std::string digest = d["digest"];
    uint64_t size = d["size"];
    std::filesystem::path dest = scratch_->path() / ("blob-" + digest.substr(7));
    ASSERT_TRUE(fs::create_new_file(dest, 0644));
    uint64_t last = 0;
    auto r = src.blob(digest, size, dest, [&](uint64_t done, uint64_t total) {
      EXPECT_EQ(total, size);
      last = done;
    });
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(last, size) << "progress reached the end";
    auto got = sha256_file(dest);
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ(*got, digest);
  }
}

}  // namespace kiln::registry_test
