// FuseSession on real host trees: what the guest kernel sees of the roots (the virtual
// root, files, nested directories, symlinks verbatim, special files hidden), that
// nothing it sends can write, escape a root or grow the host's tables without bound,
// and that a host change is seen.
#include "share/fuse_session.h"

#include "tests/unit/share/fuse_test_client.h"
#include "tests/unit/share/host_tree.h"

#include <gtest/gtest.h>
#include <dirent.h>
#include <sys/stat.h>

#include <random>

namespace kiln::share {
namespace {

using testing::Client;
using testing::HostTree;
using testing::Reply;

class Session : public ::testing::Test {
 protected:
  void SetUp() override { start({tree_.path()}); }

  void start(const std::vector<std::filesystem::path>& roots, SessionLimits limits = {}) {
    auto s = FuseSession::create(roots, limits);
    ASSERT_TRUE(s.ok()) << s.error().message;
    session_.emplace(std::move(*s));
    client_.emplace(*session_);
    const Reply r = client_->init();
    ASSERT_EQ(r.error, 0);
  }

  FuseSession& session() { return *session_; }
  Client& client() { return *client_; }

  HostTree tree_;
  std::optional<FuseSession> session_;
  std::optional<Client> client_;
};

TEST(SessionInit, NegotiatesTheKernelsMinorAndOnlyFlagsItOffered) {
  HostTree tree;
  auto s = FuseSession::create({tree.path()}, {});
  ASSERT_TRUE(s.ok()) << s.error().message;
  Client client(*s);
  const Reply r = client.init(7, 36, FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_POSIX_LOCKS);
  ASSERT_EQ(r.error, 0);
  const auto out = r.as<fuse_init_out>();
  EXPECT_EQ(out.major, 7u);
  EXPECT_EQ(out.minor, 36u);
  EXPECT_EQ(out.flags, uint32_t{FUSE_ASYNC_READ | FUSE_MAX_PAGES}) << "asked for what was not offered, or locks";
  EXPECT_EQ(out.max_pages * 4096u, kMaxRead) << "the kernel's READs must fit the 1 MiB cap";
  EXPECT_EQ(out.max_readahead, 128u * 1024);
  EXPECT_TRUE(s->initialized());
  EXPECT_EQ(s->minor(), 36u);
  EXPECT_EQ(client.init().error, EIO) << "a second INIT";
}

TEST(SessionInit, ANewerKernelGetsTheHeadersMinor) {
  HostTree tree;
  auto s = FuseSession::create({tree.path()}, {});
  ASSERT_TRUE(s.ok());
  Client client(*s);
  const Reply r = client.init(7, 1000);
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.as<fuse_init_out>().minor, uint32_t{FUSE_KERNEL_MINOR_VERSION});
}

TEST(SessionInit, AnOldKernelGetsTheShortReplyItExpects) {
  HostTree tree;
  auto s = FuseSession::create({tree.path()}, {});
  ASSERT_TRUE(s.ok());
  Client client(*s);
  // Protocol 7.22 (Linux 3.14): a 16-byte fuse_init_in, a 24-byte reply.
  fuse_init_in in{};
  in.major = 7;
  in.minor = 22;
  in.flags = FUSE_ASYNC_READ;
  const Reply r = client.call(FUSE_INIT, 0, testing::bytes_of(in).substr(0, 16));
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.payload.size(), size_t{FUSE_COMPAT_22_INIT_OUT_SIZE});
  EXPECT_TRUE(s->initialized());
}

TEST(SessionInit, RefusesProtocolsItCannotSpeak) {
  HostTree tree;
  auto s = FuseSession::create({tree.path()}, {});
  ASSERT_TRUE(s.ok());
  Client client(*s);
  EXPECT_EQ(client.init(6, 40).error, EPROTO);
  EXPECT_EQ(client.init(7, 8).error, EPROTO) << "before 7.9 the structs had other sizes";
  EXPECT_EQ(client.call(FUSE_INIT, 0, std::string(4, '\0')).error, EINVAL) << "no version in it";
  // A newer major: kiln answers with its own and waits for an INIT in it.
  const Reply newer = client.init(8, 0);
  ASSERT_EQ(newer.error, 0);
  EXPECT_EQ(newer.as<fuse_init_out>().major, 7u);
  EXPECT_FALSE(s->initialized());
  EXPECT_EQ(client.init().error, 0);
}

TEST(SessionInit, EveryRequestBeforeInitIsRefused) {
  HostTree tree;
  tree.file("f", "x");
  auto s = FuseSession::create({tree.path()}, {});
  ASSERT_TRUE(s.ok());
  Client client(*s);
  EXPECT_EQ(client.lookup(kRootNodeId, "0").error, EIO);
  EXPECT_EQ(client.call(FUSE_GETATTR, kRootNodeId).error, EIO);
  EXPECT_EQ(s->node_count(), 0u);
}

TEST_F(Session, TheVirtualRootListsOneDirectoryPerRoot) {
  HostTree second;
  second.file("only-in-second", "2");
  tree_.file("only-in-first", "1");
  start({tree_.path(), second.path()});

  const Reply attr = client().call(FUSE_GETATTR, kRootNodeId);
  ASSERT_EQ(attr.error, 0);
  EXPECT_EQ(attr.as<fuse_attr_out>().attr.mode, uint32_t{S_IFDIR | 0555});
  EXPECT_EQ(client().names(kRootNodeId), (std::set<std::string>{"0", "1"}));
  EXPECT_EQ(client().names(client().walk("", 0)), (std::set<std::string>{"only-in-first"}));
  EXPECT_EQ(client().names(client().walk("", 1)), (std::set<std::string>{"only-in-second"}));
  for (const char* bad : {"2", "00", "01", "-1", "+1", "1 ", "18446744073709551616"})
    EXPECT_EQ(client().lookup(kRootNodeId, bad).error, ENOENT) << bad;
  EXPECT_EQ(client().open(kRootNodeId).error, EISDIR);
}

TEST_F(Session, LooksUpAndReadsFilesInNestedDirectories) {
  tree_.file("top.txt", "top level\n");
  tree_.file("a/b/c/deep.txt", "three levels down\n");
  ::chmod((tree_ / "a/b/c/deep.txt").c_str(), 0640);

  const uint64_t deep = client().walk("a/b/c/deep.txt");
  const Reply attr = client().call(FUSE_GETATTR, deep);
  ASSERT_EQ(attr.error, 0);
  struct stat host {};
  ASSERT_EQ(::lstat((tree_ / "a/b/c/deep.txt").c_str(), &host), 0);
  const fuse_attr a = attr.as<fuse_attr_out>().attr;
  EXPECT_EQ(a.mode, uint32_t{S_IFREG | 0640});
  EXPECT_EQ(a.size, 18u);
  EXPECT_EQ(a.ino, host.st_ino);
  EXPECT_EQ(a.mtime, static_cast<uint64_t>(host.st_mtim.tv_sec));
  EXPECT_EQ(a.mtimensec, static_cast<uint32_t>(host.st_mtim.tv_nsec));
  EXPECT_EQ(attr.as<fuse_attr_out>().attr_valid, kAttrTimeoutSeconds);

  EXPECT_EQ(client().read_file(deep), "three levels down\n");
  EXPECT_EQ(client().read_file(deep, 5), "three levels down\n") << "in 5-byte pieces";
  EXPECT_EQ(client().read_file(client().walk("top.txt")), "top level\n");

  const fuse_entry_out e = client().entry(client().walk("a/b"), "c");
  EXPECT_EQ(e.attr.mode & S_IFMT, uint32_t{S_IFDIR});
  EXPECT_EQ(e.entry_valid, kAttrTimeoutSeconds);
  EXPECT_EQ(client().lookup(client().walk("a"), "missing").error, ENOENT);
  EXPECT_EQ(client().lookup(client().walk("top.txt"), "x").error, ENOTDIR);
}

TEST_F(Session, ReadsAtAndBeyondTheEndOfAFile) {
  tree_.file("f", "0123456789");
  const uint64_t f = client().walk("f");
  const uint64_t fh = client().open_ok(f);
  EXPECT_EQ(client().read(f, fh, 7, 100).payload, "789") << "a short read at the end";
  const Reply at_end = client().read(f, fh, 10, 100);
  EXPECT_EQ(at_end.error, 0);
  EXPECT_EQ(at_end.payload, "");
  const Reply beyond = client().read(f, fh, 1u << 30, 100);
  EXPECT_EQ(beyond.error, 0);
  EXPECT_EQ(beyond.payload, "");
  EXPECT_EQ(client().read(f, fh, uint64_t{1} << 63, 100).error, EINVAL) << "an offset no file has";
  EXPECT_EQ(client().read(f, fh, 0, 0).payload, "");
}

TEST_F(Session, AReadNeverCarriesMoreThanOneMebibyte) {
  std::string big(3 * kMaxRead, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + i / 4099);
  tree_.file("big", big);
  const uint64_t f = client().walk("big");
  const uint64_t fh = client().open_ok(f);
  const Reply r = client().read(f, fh, 5, UINT32_MAX);
  ASSERT_EQ(r.error, 0);
  ASSERT_EQ(r.payload.size(), size_t{kMaxRead});
  EXPECT_EQ(r.payload, big.substr(5, kMaxRead));
  EXPECT_EQ(client().read_file(f, kMaxRead), big);
}

TEST_F(Session, ListsDirectoriesWithinTheSizeAskedFor) {
  std::set<std::string> expected;
  for (int i = 0; i < 300; ++i) {
    const std::string name = "file-" + std::to_string(i) + std::string(static_cast<size_t>(i % 60), 'x');
    tree_.file("many/" + name, std::to_string(i));
    expected.insert(name);
  }
  tree_.dir("many/subdir");
  expected.insert("subdir");
  const uint64_t many = client().walk("many");
  EXPECT_EQ(client().names(many), expected);
  EXPECT_EQ(client().names(many, 200), expected) << "in 200-byte READDIRs";
  EXPECT_EQ(client().names(many, 2 * 1024 * 1024), expected) << "in one READDIR";

  // The types and inode numbers are the host's.
  struct stat sub {};
  ASSERT_EQ(::lstat((tree_ / "many/subdir").c_str(), &sub), 0);
  bool seen = false;
  for (const auto& d : client().list(many)) {
    if (d.name != "subdir") continue;
    seen = true;
    EXPECT_EQ(d.type, uint32_t{DT_DIR});
    EXPECT_EQ(d.ino, sub.st_ino);
  }
  EXPECT_TRUE(seen);

  // A size too small for any entry lists nothing (the kernel never asks for that little).
  const uint64_t fh = client().open_ok(many, FUSE_OPENDIR);
  const Reply tiny = client().read(many, fh, 0, 16, FUSE_READDIR);
  EXPECT_EQ(tiny.error, 0);
  EXPECT_EQ(tiny.payload, "");
}

TEST_F(Session, ASymlinkIsReturnedVerbatimAndNeverFollowedOnTheHost) {
  HostTree outside;
  outside.file("secret", "host-only\n");
  outside.dir("secret-dir");
  outside.file("secret-dir/inner", "also host-only\n");
  tree_.symlink("abs", (outside / "secret").string());
  tree_.symlink("rel", "../../" + outside.path().filename().string() + "/secret");
  tree_.symlink("dirlink", (outside / "secret-dir").string());
  tree_.symlink("dangling", "/no/such/place");

  const fuse_entry_out abs = client().entry(client().walk(""), "abs");
  EXPECT_EQ(abs.attr.mode & S_IFMT, uint32_t{S_IFLNK}) << "the link, not what it points to";
  EXPECT_EQ(abs.attr.size, (outside / "secret").string().size());
  const Reply target = client().call(FUSE_READLINK, abs.nodeid);
  ASSERT_EQ(target.error, 0);
  EXPECT_EQ(target.payload, (outside / "secret").string());
  EXPECT_EQ(client().open(abs.nodeid).error, ELOOP) << "opened the link's target on the host";

  EXPECT_EQ(client().call(FUSE_READLINK, client().walk("rel")).payload,
            "../../" + outside.path().filename().string() + "/secret");
  EXPECT_EQ(client().call(FUSE_READLINK, client().walk("dangling")).payload, "/no/such/place");

  const uint64_t dirlink = client().walk("dirlink");
  EXPECT_EQ(client().lookup(dirlink, "inner").error, ENOTDIR) << "looked up through a symlink on the host";
  EXPECT_EQ(client().open(dirlink, O_RDONLY, FUSE_OPENDIR).error, ENOTDIR);
  EXPECT_EQ(client().call(FUSE_READLINK, client().walk("")).error, EINVAL) << "READLINK of a directory";
}

TEST_F(Session, FifosAndSocketsAreInvisible) {
  tree_.file("regular", "r");
  tree_.fifo("fifo");
  tree_.socket("sock");
  tree_.dir("d");
  tree_.symlink("link", "regular");
  const uint64_t root = client().walk("");
  EXPECT_EQ(client().names(root), (std::set<std::string>{"regular", "d", "link"}));
  EXPECT_EQ(client().lookup(root, "fifo").error, ENOENT);
  EXPECT_EQ(client().lookup(root, "sock").error, ENOENT);
  EXPECT_EQ(session().node_count(), 1u) << "only the root directory is held";
}

TEST_F(Session, NamesThatAreNotOneEntryAreRefused) {
  tree_.file("a/b", "b");
  const uint64_t root = client().walk("");
  const uint64_t a = client().walk("a");
  EXPECT_EQ(client().lookup(a, "..").error, EINVAL);
  EXPECT_EQ(client().lookup(root, "..").error, EINVAL) << "out of the root";
  EXPECT_EQ(client().lookup(a, ".").error, EINVAL);
  EXPECT_EQ(client().lookup(root, "a/b").error, EINVAL);
  EXPECT_EQ(client().lookup(root, "/etc").error, EINVAL);
  EXPECT_EQ(client().lookup(root, "").error, EINVAL);
  EXPECT_EQ(client().lookup(root, std::string(256, 'n')).error, ENAMETOOLONG);
  EXPECT_EQ(client().call(FUSE_LOOKUP, root, "no-terminator").error, EINVAL);
  EXPECT_EQ(client().lookup(kRootNodeId, "..").error, EINVAL);
  EXPECT_EQ(client().lookup(999, "b").error, ESTALE) << "a nodeid the guest was never given";
  // What follows the name's NUL is not part of it.
  EXPECT_EQ(client().call(FUSE_LOOKUP, a, std::string("b\0/../..", 8)).error, 0);
}

TEST_F(Session, EveryModifyingRequestIsReadOnly) {
  tree_.file("f", "original");
  tree_.dir("d");
  const uint64_t root = client().walk("");
  const uint64_t f = client().walk("f");
  for (const uint32_t op : {FUSE_SETATTR, FUSE_SYMLINK, FUSE_MKNOD, FUSE_MKDIR, FUSE_UNLINK, FUSE_RMDIR,
                            FUSE_RENAME, FUSE_LINK, FUSE_WRITE, FUSE_SETXATTR, FUSE_REMOVEXATTR, FUSE_CREATE,
                            FUSE_FALLOCATE, FUSE_RENAME2, FUSE_COPY_FILE_RANGE, FUSE_TMPFILE}) {
    // Bodies shaped like the real ones (a struct, then names or data).
    const std::string body = std::string(128, '\0') + "f\0new\0";
    EXPECT_EQ(client().call(op, root, body).error, EROFS) << "opcode " << op;
    EXPECT_EQ(client().call(op, f, body).error, EROFS) << "opcode " << op;
    EXPECT_EQ(client().call(op, kRootNodeId, {}).error, EROFS) << "opcode " << op;
  }
  EXPECT_EQ(client().open(f, O_WRONLY).error, EROFS);
  EXPECT_EQ(client().open(f, O_RDWR).error, EROFS);
  EXPECT_EQ(client().open(f, O_RDONLY | O_TRUNC).error, EROFS);
  fuse_access_in access{};
  access.mask = W_OK;
  EXPECT_EQ(client().call(FUSE_ACCESS, f, testing::bytes_of(access)).error, EROFS);
  EXPECT_EQ(session().open_handle_count(), 0u);

  EXPECT_EQ(client().read_file(f), "original");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(tree_.path()), {}), 2) << "something was created";
}

TEST_F(Session, ForgetFreesNodesAndTheSameInodeKeepsItsNodeid) {
  tree_.file("f", "x");
  ::link((tree_ / "f").c_str(), (tree_ / "hardlink").c_str());
  const uint64_t root = client().walk("");
  EXPECT_EQ(session().node_count(), 1u);
  const uint64_t f = client().entry(root, "f").nodeid;
  EXPECT_EQ(client().entry(root, "f").nodeid, f);
  EXPECT_EQ(client().entry(root, "hardlink").nodeid, f) << "one host inode, one nodeid";
  EXPECT_EQ(session().node_count(), 2u);

  client().forget(f, 2);
  EXPECT_EQ(session().node_count(), 2u) << "one lookup is still held";
  client().forget(f, 1);
  EXPECT_EQ(session().node_count(), 1u);
  EXPECT_EQ(client().call(FUSE_GETATTR, f).error, ESTALE);
  EXPECT_NE(client().entry(root, "f").nodeid, f) << "a nodeid is never reused";

  // BATCH_FORGET, with a count larger than what follows: only what is there counts.
  const uint64_t g = client().entry(root, "hardlink").nodeid;
  fuse_batch_forget_in batch{};
  batch.count = 1000;
  fuse_forget_one one{};
  one.nodeid = g;
  one.nlookup = 2;
  fuse_forget_one unknown{};
  unknown.nodeid = 12345;
  unknown.nlookup = 1;
  EXPECT_FALSE(client()
                   .call(FUSE_BATCH_FORGET, 0,
                         testing::bytes_of(batch) + testing::bytes_of(unknown) + testing::bytes_of(one))
                   .present);
  EXPECT_EQ(session().node_count(), 1u);
  client().forget(kRootNodeId, 5);
  client().forget(root, UINT64_MAX);
  EXPECT_EQ(session().node_count(), 0u);
  EXPECT_EQ(client().call(FUSE_GETATTR, kRootNodeId).error, 0) << "the virtual root is never forgotten";
}

TEST_F(Session, TheNodeTableIsBounded) {
  for (int i = 0; i < 5; ++i) tree_.file("f" + std::to_string(i), "x");
  start({tree_.path()}, SessionLimits{.max_nodes = 3, .max_handles = 2});
  const uint64_t root = client().walk("");
  const uint64_t f0 = client().entry(root, "f0").nodeid;
  client().entry(root, "f1");
  EXPECT_EQ(client().lookup(root, "f2").error, ENFILE);
  EXPECT_EQ(client().entry(root, "f0").nodeid, f0) << "a node already held is found";
  EXPECT_EQ(session().node_count(), 3u);
  client().forget(f0, 2);
  EXPECT_EQ(client().lookup(root, "f2").error, 0);

  // Open handles are bounded too.
  const uint64_t f2 = client().entry(root, "f2").nodeid;
  const uint64_t fh1 = client().open_ok(f2);
  client().open_ok(f2);
  EXPECT_EQ(client().open(f2).error, ENFILE);
  EXPECT_EQ(client().open(root, O_RDONLY, FUSE_OPENDIR).error, ENFILE);
  EXPECT_EQ(client().release(f2, fh1).error, 0);
  EXPECT_EQ(client().open(f2).error, 0);
}

TEST_F(Session, HandlesAreCheckedAgainstTheirNodeAndKind) {
  tree_.file("f", "data");
  tree_.dir("d");
  const uint64_t f = client().walk("f");
  const uint64_t d = client().walk("d");
  const uint64_t file_fh = client().open_ok(f);
  const uint64_t dir_fh = client().open_ok(d, FUSE_OPENDIR);
  EXPECT_EQ(client().read(f, dir_fh, 0, 10).error, EBADF) << "READ of a directory handle";
  EXPECT_EQ(client().read(d, dir_fh, 0, 10).error, EBADF) << "READ of a directory";
  EXPECT_EQ(client().read(d, file_fh, 0, 10, FUSE_READDIR).error, EBADF) << "READDIR of a file handle";
  EXPECT_EQ(client().read(f, file_fh, 0, 10, FUSE_READDIR).error, EBADF);
  EXPECT_EQ(client().read(f, 999, 0, 10).error, EBADF);
  EXPECT_EQ(client().release(d, dir_fh, FUSE_RELEASE).error, EBADF) << "RELEASE of a directory handle";
  EXPECT_EQ(client().release(f, file_fh, FUSE_RELEASEDIR).error, EBADF);
  EXPECT_EQ(client().open(d).error, EISDIR);
  EXPECT_EQ(client().open(f, O_RDONLY, FUSE_OPENDIR).error, ENOTDIR);

  fuse_flush_in flush{};
  flush.fh = file_fh;
  EXPECT_EQ(client().call(FUSE_FLUSH, f, testing::bytes_of(flush)).error, 0);
  EXPECT_EQ(client().release(f, file_fh).error, 0);
  EXPECT_EQ(client().release(f, file_fh).error, EBADF) << "released twice";
  EXPECT_EQ(client().read(f, file_fh, 0, 10).error, EBADF) << "READ after RELEASE";
  EXPECT_EQ(client().call(FUSE_FLUSH, f, testing::bytes_of(flush)).error, EBADF);
  EXPECT_EQ(client().release(d, dir_fh, FUSE_RELEASEDIR).error, 0);
  EXPECT_EQ(session().open_handle_count(), 0u);
}

TEST_F(Session, StatfsAccessAndTheOpcodesItDoesNotServe) {
  tree_.file("plain", "x");
  tree_.file("script", "#!/bin/sh\n");
  ::chmod((tree_ / "plain").c_str(), 0600);
  ::chmod((tree_ / "script").c_str(), 0755);
  const uint64_t plain = client().walk("plain");
  const uint64_t script = client().walk("script");

  const Reply st = client().call(FUSE_STATFS, plain);
  ASSERT_EQ(st.error, 0);
  EXPECT_GT(st.as<fuse_statfs_out>().st.bsize, 0u);
  EXPECT_EQ(client().call(FUSE_STATFS, kRootNodeId).error, 0);

  auto access = [&](uint64_t node, uint32_t mask, uint32_t uid) {
    fuse_access_in in{};
    in.mask = mask;
    return client().call(FUSE_ACCESS, node, testing::bytes_of(in), uid, uid).error;
  };
  EXPECT_EQ(access(plain, R_OK, 0), 0);
  EXPECT_EQ(access(plain, X_OK, 0), EACCES) << "root executes only what has an x bit";
  EXPECT_EQ(access(script, X_OK, 0), 0);
  EXPECT_EQ(access(plain, R_OK, 4242), EACCES) << "0600, another user";
  EXPECT_EQ(access(script, R_OK | X_OK, 4242), 0);
  EXPECT_EQ(access(kRootNodeId, R_OK | X_OK, 4242), 0);

  for (const uint32_t op : std::initializer_list<uint32_t>{
           FUSE_GETXATTR, FUSE_LISTXATTR, FUSE_READDIRPLUS, FUSE_IOCTL, FUSE_LSEEK, FUSE_FSYNC, FUSE_GETLK, FUSE_BMAP,
           FUSE_POLL, FUSE_SETUPMAPPING, CUSE_INIT, 7u, 19u, 52u, 4242u, UINT32_MAX}) {
    EXPECT_EQ(client().call(op, plain, std::string(64, '\0')).error, ENOSYS) << "opcode " << op;
  }
  EXPECT_FALSE(client().call(FUSE_INTERRUPT, 0, std::string(8, '\0')).present);
  EXPECT_FALSE(client().call(FUSE_NOTIFY_REPLY, 0, std::string(8, '\0')).present);
  EXPECT_EQ(client().call(FUSE_DESTROY, 0).error, 0);
  EXPECT_EQ(client().call(FUSE_GETATTR, plain).error, EIO) << "after DESTROY";
}

TEST_F(Session, AHostFileReplacedOrChangedIsSeen) {
  tree_.file("f", "old contents");
  const uint64_t root = client().walk("");
  const uint64_t before = client().entry(root, "f").nodeid;
  EXPECT_EQ(client().read_file(before), "old contents");

  tree_.replace("f", "replaced!");
  const fuse_entry_out after = client().entry(root, "f");
  EXPECT_NE(after.nodeid, before) << "a new host inode is a new node";
  EXPECT_EQ(after.attr.size, 9u);
  EXPECT_EQ(client().read_file(after.nodeid), "replaced!");
  EXPECT_EQ(client().read_file(before), "old contents") << "the old inode, still held, keeps its contents";

  // Changed in place: the same node, the new attributes and contents.
  const uint64_t fh = client().open_ok(after.nodeid);
  tree_.file("f", "rewritten in place");
  EXPECT_EQ(client().call(FUSE_GETATTR, after.nodeid).as<fuse_attr_out>().attr.size, 18u);
  EXPECT_EQ(client().read(after.nodeid, fh, 0, 100).payload, "rewritten in place");

  // Removed and created again: LOOKUP says so.
  std::filesystem::remove(tree_ / "f");
  EXPECT_EQ(client().lookup(root, "f").error, ENOENT);
  tree_.dir("f");
  EXPECT_EQ(client().entry(root, "f").attr.mode & S_IFMT, uint32_t{S_IFDIR});
}

TEST(SessionCreate, RefusesRootsThatAreNotDirectories) {
  HostTree tree;
  tree.file("file", "x");
  EXPECT_FALSE(FuseSession::create({tree / "file"}, {}).ok());
  EXPECT_FALSE(FuseSession::create({tree / "missing"}, {}).ok());
  auto relative = FuseSession::create({"relative/path"}, {});
  ASSERT_FALSE(relative.ok());
  EXPECT_NE(relative.error().message.find("absolute"), std::string::npos) << relative.error().message;
  EXPECT_TRUE(FuseSession::create({}, {}).ok()) << "no roots: an empty virtual root";
}

TEST_F(Session, MalformedRequestsAreRefusedWithoutReadingPastThem) {
  tree_.file("f", "x");
  const uint64_t f = client().walk("f");
  auto handle = [&](const std::string& bytes) { return session().handle(testing::as_span(bytes)); };

  // Not one well-framed request: no reply at all.
  EXPECT_EQ(handle(""), "");
  EXPECT_EQ(handle(std::string(39, '\0')), "");
  std::string req = testing::request_bytes(FUSE_GETATTR, 7, f, "");
  EXPECT_NE(handle(req), "");
  EXPECT_EQ(handle(req + "trailing"), "") << "len says less than there is";
  EXPECT_EQ(handle(req.substr(0, 39)), "");
  std::string lying = req;
  const uint32_t huge = kMaxMessage + 1;
  std::memcpy(lying.data(), &huge, 4);
  EXPECT_EQ(handle(lying), "") << "len says more than there is";
  std::string oversized = testing::request_bytes(FUSE_LOOKUP, 8, f, std::string(kMaxMessage, 'a'));
  EXPECT_EQ(handle(oversized), "") << "larger than any request may be";

  // Well framed, but the body is short for the opcode: EINVAL.
  for (const uint32_t op : {FUSE_OPEN, FUSE_READ, FUSE_RELEASE, FUSE_OPENDIR, FUSE_READDIR, FUSE_RELEASEDIR,
                            FUSE_ACCESS, FUSE_FLUSH}) {
    EXPECT_EQ(client().call(op, f, std::string(3, '\x01')).error, EINVAL) << "opcode " << op;
  }
  EXPECT_FALSE(client().call(FUSE_FORGET, f, "abc").present);
  EXPECT_FALSE(client().call(FUSE_BATCH_FORGET, 0, "abc").present);
  EXPECT_EQ(session().node_count(), 2u) << "a short FORGET forgot something";
}

TEST_F(Session, SurvivesGarbage) {
  tree_.file("a/b", "bbb");
  tree_.symlink("l", "a");
  tree_.fifo("p");
  client().walk("a/b");
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    // A valid header around random bytes, with an opcode and nodeid small enough to
    // reach the handlers.
    const size_t size = rng() % 200;
    std::string body(size, '\0');
    for (char& c : body) c = static_cast<char>(rng() % 4 == 0 ? 0 : rng());
    const uint32_t op = static_cast<uint32_t>(rng() % 56);
    const uint64_t nodeid = rng() % 6;
    const std::string reply = session().handle(testing::as_span(testing::request_bytes(op, 9, nodeid, body)));
    if (reply.empty()) continue;
    ASSERT_GE(reply.size(), sizeof(fuse_out_header));
    fuse_out_header h{};
    std::memcpy(&h, reply.data(), sizeof h);
    ASSERT_EQ(h.len, reply.size());
    ASSERT_LE(h.len, kMaxMessage);
    ASSERT_EQ(h.unique, 9u);
  }
  // Random bytes, not even framed.
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(rng() % 120, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    (void)session().handle(testing::as_span(bytes));
  }
  EXPECT_LE(session().node_count(), SessionLimits{}.max_nodes);
}

}  // namespace
}  // namespace kiln::share
