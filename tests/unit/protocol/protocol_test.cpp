#include "agent/protocol.h"

#include <gtest/gtest.h>

using namespace kiln::proto;

namespace {

std::vector<Frame> decode_all(const std::string& bytes, size_t chunk) {
  FrameDecoder d;
  std::vector<Frame> out;
  for (size_t i = 0; i < bytes.size(); i += chunk) {
    EXPECT_TRUE(d.feed(bytes.data() + i, std::min(chunk, bytes.size() - i))) << d.error();
    while (auto f = d.next()) out.push_back(std::move(*f));
  }
  return out;
}

}  // namespace

TEST(Frame, RoundTripsAcrossArbitraryChunking) {
  std::string wire = encode_frame(MsgType::hello, encode(Hello{kProtocolVersion, "1.2.3"})) +
                     encode_frame(MsgType::stdout_data, std::string(70000, 'x')) +
                     encode_frame(MsgType::ok, "");
  for (size_t chunk : {1, 7, 4096, 1 << 20}) {
    auto frames = decode_all(wire, chunk);
    ASSERT_EQ(frames.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(frames[0].type, MsgType::hello);
    EXPECT_EQ(decode_hello(frames[0].payload)->agent_version, "1.2.3");
    EXPECT_EQ(frames[1].payload.size(), 70000u);
    EXPECT_EQ(frames[2].type, MsgType::ok);
    EXPECT_TRUE(frames[2].payload.empty());
  }
}

TEST(Frame, RejectsBadMagic) {
  FrameDecoder d;
  std::string junk = "GET / HTTP/1.1\r\n";
  EXPECT_FALSE(d.feed(junk.data(), junk.size()));
  EXPECT_NE(d.error().find("magic"), std::string::npos);
  EXPECT_FALSE(d.next().has_value());
}

TEST(Frame, RejectsOversizedFrameBeforeBufferingIt) {
  std::string wire = encode_frame(MsgType::stdout_data, "");
  wire[4] = wire[5] = wire[6] = wire[7] = '\xff';  // length 4 GiB - 1
  FrameDecoder d;
  EXPECT_FALSE(d.feed(wire.data(), wire.size()));
  EXPECT_NE(d.error().find("exceeds"), std::string::npos);
}

TEST(Frame, RejectsOtherFrameFormat) {
  std::string wire = encode_frame(MsgType::ok, "");
  EXPECT_EQ(wire[2], 1);  // the header byte is the frame format, not the protocol version
  wire[2] = 9;
  FrameDecoder d;
  EXPECT_FALSE(d.feed(wire.data(), wire.size()));
  EXPECT_NE(d.error().find("frame format 9, expected 1"), std::string::npos) << d.error();
}

TEST(Frame, BuffersOnlyWhatIsPending) {
  FrameDecoder d;
  std::string wire = encode_frame(MsgType::ok, "");
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(d.feed(wire.data(), wire.size()));
    ASSERT_TRUE(d.next().has_value());
  }
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(Messages, ExecRoundTrip) {
  Exec e{{"/bin/echo", "a b", ""}, {"A=1", "PATH=/bin"}, "/work/dir", StdinMode::stream, {}};
  auto back = decode_exec(encode(e));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->argv, e.argv);
  EXPECT_EQ(back->env, e.env);
  EXPECT_EQ(back->cwd, e.cwd);
  EXPECT_EQ(back->stdin_mode, StdinMode::stream);
  EXPECT_EQ(back->user, "");
}

// feature::exec_user: the user is a trailing field, present only when set, so an
// exec without one encodes exactly as before the feature existed.
TEST(Messages, ExecUserIsAnOptionalTrailingField) {
  Exec plain{{"id"}, {}, "/", StdinMode::null, {}};
  Exec as_user = plain;
  as_user.user = "postgres:ssl-cert";
  EXPECT_EQ(encode(as_user).size(), encode(plain).size() + 4 + as_user.user.size());
  auto back = decode_exec(encode(as_user));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->user, "postgres:ssl-cert");
  std::string empty_user = encode(plain) + Writer().str("").take();
  EXPECT_FALSE(decode_exec(empty_user));
  std::string long_user = encode(plain) + Writer().str(std::string(kMaxUser + 1, 'u')).take();
  EXPECT_FALSE(decode_exec(long_user));
  EXPECT_FALSE(decode_exec(encode(as_user) + "x"));
}

TEST(Messages, ExecStdinModeIsChecked) {
  // Byte layout by hand: argv ["x"], env [], cwd "/", then the stdin mode byte.
  std::string base = Writer().u32(1).str("x").u32(0).str("/").take();
  EXPECT_EQ(decode_exec(base + '\0')->stdin_mode, StdinMode::null);
  EXPECT_EQ(decode_exec(base + '\1')->stdin_mode, StdinMode::stream);
  EXPECT_EQ(decode_exec(base + '\2')->stdin_mode, StdinMode::terminal);
  EXPECT_FALSE(decode_exec(base + '\3'));
  EXPECT_FALSE(decode_exec(base));          // protocol 1's exec had no mode
}

TEST(Messages, HelloCarriesVersionsAndFeatures) {
  Hello h{5, "9.9", 3, 0x5};
  auto back = decode_hello(encode(h));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->protocol_version, 5u);
  EXPECT_EQ(back->agent_version, "9.9");
  EXPECT_EQ(back->min_protocol_version, 3u);
  EXPECT_EQ(back->features, 0x5u);
  EXPECT_FALSE(decode_hello(encode(Hello{2, "x", 3, 0})));  // oldest above newest
  EXPECT_FALSE(decode_hello(encode(h) + "x"));
}

TEST(Messages, ProtocolOneHelloDecodesSoItsVersionCanBeNamed) {
  // What a protocol 1 agent sent: u32 version, str agent version, nothing else.
  auto old = decode_hello(Writer().u32(1).str("0.0.9").take());
  ASSERT_TRUE(old);
  EXPECT_EQ(old->protocol_version, 1u);
  EXPECT_EQ(old->min_protocol_version, 1u);
  EXPECT_EQ(old->features, 0u);
  EXPECT_EQ(old->agent_version, "0.0.9");
}

TEST(Messages, HelloAckRoundTrip) {
  auto back = decode_hello_ack(encode(HelloAck{2, feature::stdin_stream}));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->protocol_version, 2u);
  EXPECT_EQ(back->features, feature::stdin_stream);
  EXPECT_FALSE(decode_hello_ack(""));  // protocol 1's hello_ack was empty
}

TEST(Versions, CommonVersionIsTheNewestBothSpeak) {
  static_assert(kMinProtocolVersion == 2 && kProtocolVersion == 2, "update these cases with the range");
  EXPECT_EQ(common_version(2, 2), 2u);
  EXPECT_EQ(common_version(1, 7), 2u);
  EXPECT_FALSE(common_version(1, 1));
  EXPECT_FALSE(common_version(3, 4));
  EXPECT_EQ(version_range(2, 2), "2");
  EXPECT_EQ(version_range(2, 4), "2-4");
}

TEST(Messages, ExitReportsBytesWrittenAndOomKills) {
  Exit e{true, 9, 123456789012ull, 7, 2};
  auto back = decode_exit(encode(e));
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->signaled);
  EXPECT_EQ(back->code, 9);
  EXPECT_EQ(back->stdout_bytes, 123456789012ull);
  EXPECT_EQ(back->stderr_bytes, 7u);
  EXPECT_EQ(back->oom_kills, 2u);
  // Protocol 1's exit (u8 how, i32 code) is too short now.
  EXPECT_FALSE(decode_exit(Writer().u8(0).i32(0).take()));
}

TEST(Messages, WindowSizeRoundTripsAndIsBounded) {
  auto w = decode_window_size(encode(WindowSize{40, 120}));
  ASSERT_TRUE(w);
  EXPECT_EQ(w->rows, 40u);
  EXPECT_EQ(w->cols, 120u);
  EXPECT_TRUE(decode_window_size(encode(WindowSize{0, 0})));  // unknown, as struct winsize allows
  EXPECT_FALSE(decode_window_size(Writer().u32(70000).u32(80).take()));
  EXPECT_FALSE(decode_window_size(Writer().u32(24).take()));
  EXPECT_FALSE(decode_window_size(Writer().u32(24).u32(80).u8(0).take()));
}

TEST(Messages, DetachedNamesAPlausibleProcess) {
  EXPECT_EQ(decode_detached(encode(Detached{4242}))->pid, 4242u);
  EXPECT_FALSE(decode_detached(encode(Detached{1})));  // the agent itself
  EXPECT_FALSE(decode_detached(encode(Detached{0})));
  EXPECT_FALSE(decode_detached(encode(Detached{1u << 23})));
  EXPECT_FALSE(decode_detached(Writer().u32(42).u8(0).take()));
}

TEST(Messages, StdinCreditIsPositive) {
  EXPECT_EQ(decode_stdin_credit(encode(StdinCredit{4096}))->bytes, 4096u);
  EXPECT_FALSE(decode_stdin_credit(encode(StdinCredit{0})));
  EXPECT_FALSE(decode_stdin_credit("abc"));
}

TEST(Messages, ExecRejectsEmptyArgvAndBadEnv) {
  EXPECT_FALSE(decode_exec(encode(Exec{{}, {}, "/", StdinMode::null, {}})));
  EXPECT_FALSE(decode_exec(encode(Exec{{"x"}, {"NOEQUALS"}, "/", StdinMode::null, {}})));
  EXPECT_FALSE(decode_exec(encode(Exec{{"x"}, {}, "relative", StdinMode::null, {}})));
}

TEST(Messages, ExitCodesAreRangeChecked) {
  EXPECT_EQ(decode_exit(encode(Exit{false, 77}))->code, 77);
  EXPECT_TRUE(decode_exit(encode(Exit{true, 11}))->signaled);
  EXPECT_FALSE(decode_exit(encode(Exit{false, 256})));
  EXPECT_FALSE(decode_exit(encode(Exit{true, 0})));
  EXPECT_FALSE(decode_exit(encode(Exit{true, 65})));
}

TEST(Messages, TrailingBytesAreRejected) {
  EXPECT_FALSE(decode_exit(encode(Exit{false, 0}) + "x"));
  EXPECT_FALSE(decode_error(encode(ErrorReply{"m"}) + std::string(1, '\0')));
}

TEST(Messages, HugeCountsDoNotAllocate) {
  // argv count of 2^32-1 with nothing behind it: must fail without reserving.
  std::string p = Writer().u32(0xffffffffu).take();
  EXPECT_FALSE(decode_exec(p));
  std::string s = Writer().u32(0xfffffff0u).take();  // string length far past the end
  EXPECT_FALSE(decode_error(s));
}

TEST(Messages, PutFileValidatesPathAndMode) {
  EXPECT_TRUE(decode_put_file(encode(PutFile{"/usr/lib/x.so", 0755, 10})));
  EXPECT_FALSE(decode_put_file(encode(PutFile{"/usr/../etc/passwd", 0644, 1})));
  EXPECT_FALSE(decode_put_file(encode(PutFile{"rel/path", 0644, 1})));
  EXPECT_FALSE(decode_put_file(encode(PutFile{"/x", 0100644, 1})));
}

TEST(Messages, ShareRoundTripKeepsTheRootsInOrder) {
  Share s{{"/w/proj", "/w/build", "/opt/data set"}};
  auto back = decode_share(encode(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->roots, s.roots);
  // Byte layout: strs = u32 count, then u32 length + bytes each.
  EXPECT_EQ(encode(Share{{"/a"}}), std::string("\x01\0\0\0\x02\0\0\0/a", 10));
  EXPECT_FALSE(decode_share(encode(s) + "x"));
}

TEST(Messages, ShareIsBoundedAndTakesOnlySafeAbsolutePaths) {
  EXPECT_FALSE(decode_share(encode(Share{})));  // nothing to share is no request
  EXPECT_FALSE(decode_share(encode(Share{{"relative/path"}})));
  EXPECT_FALSE(decode_share(encode(Share{{"/w/../etc"}})));
  EXPECT_FALSE(decode_share(encode(Share{{"/w//proj"}})));
  EXPECT_FALSE(decode_share(encode(Share{{std::string("/w/p\0roj", 8)}})));
  EXPECT_FALSE(decode_share(encode(Share{{"/" + std::string(4096, 'a')}})));  // longer than PATH_MAX
  EXPECT_TRUE(decode_share(encode(Share{{"/" + std::string(4095, 'a')}})));

  std::vector<std::string> many;
  for (uint32_t i = 0; i < kMaxShareRoots; ++i) many.push_back("/r" + std::to_string(i));
  EXPECT_TRUE(decode_share(encode(Share{many})));
  many.push_back("/one-more");
  EXPECT_FALSE(decode_share(encode(Share{many})));
  // A count far past what the payload holds fails before allocating.
  EXPECT_FALSE(decode_share(Writer().u32(0xffffffffu).take()));
}

TEST(Messages, SharesIsAnOfferedFeatureNextToStdin) {
  EXPECT_EQ(feature::shares, 2u);
  EXPECT_NE(kFeatures & feature::shares, 0u);
  EXPECT_NE(kFeatures & feature::stdin_stream, 0u);
  EXPECT_STREQ(type_name(MsgType::share), "share");
  EXPECT_EQ(static_cast<int>(MsgType::share), 26);
}

TEST(Paths, SafeGuestPaths) {
  EXPECT_TRUE(is_safe_guest_path("/"));
  EXPECT_TRUE(is_safe_guest_path("/a/b.c/d"));
  EXPECT_FALSE(is_safe_guest_path(""));
  EXPECT_FALSE(is_safe_guest_path("a"));
  EXPECT_FALSE(is_safe_guest_path("/a/../b"));
  EXPECT_FALSE(is_safe_guest_path("/a//b"));
  EXPECT_FALSE(is_safe_guest_path("/./a"));
  EXPECT_FALSE(is_safe_guest_path(std::string("/a\0b", 4)));
}

TEST(Types, DirectionIsKnown) {
  EXPECT_TRUE(is_guest_message(MsgType::exit));
  EXPECT_TRUE(is_guest_message(MsgType::stdin_credit));
  EXPECT_FALSE(is_guest_message(MsgType::exec));
  EXPECT_FALSE(is_guest_message(MsgType::stdin_data));
  EXPECT_TRUE(is_host_message(MsgType::exec));
  EXPECT_TRUE(is_host_message(MsgType::stdin_eof));
  EXPECT_TRUE(is_host_message(MsgType::share));
  EXPECT_TRUE(is_host_message(MsgType::resize));
  EXPECT_TRUE(is_host_message(MsgType::detach));
  EXPECT_FALSE(is_host_message(static_cast<MsgType>(30)));
  EXPECT_TRUE(is_guest_message(MsgType::detached));
  EXPECT_FALSE(is_guest_message(static_cast<MsgType>(12)));
  EXPECT_FALSE(is_host_message(static_cast<MsgType>(99)));
  EXPECT_TRUE(is_stream_message(MsgType::stdin_data));
  EXPECT_TRUE(is_stream_message(MsgType::stdin_eof));
  EXPECT_TRUE(is_stream_message(MsgType::resize));  // no reply; kept for the next terminal
  EXPECT_FALSE(is_stream_message(MsgType::file_data));  // part of a request, answered by it
}

TEST(Messages, CollectTakesOnlyASafeAbsoluteDirectory) {
  auto back = decode_collect(encode(Collect{"/tmp/kiln-outputs", 100u << 20}));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->dir, "/tmp/kiln-outputs");
  EXPECT_EQ(back->max_bytes, 100u << 20);
  EXPECT_FALSE(decode_collect(encode(Collect{"tmp/out", 1})));
  EXPECT_FALSE(decode_collect(encode(Collect{"/tmp/../etc", 1})));
  EXPECT_FALSE(decode_collect(encode(Collect{"/tmp/out", 1}) + "x"));
}

TEST(Messages, CollectedRoundTripsAndItsNoteIsBounded) {
  Collected c{12345, 7, 2, "big (over the outputs cap); pipe (not a regular file, directory or symlink)"};
  auto back = decode_collected(encode(c));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->bytes, c.bytes);
  EXPECT_EQ(back->entries, c.entries);
  EXPECT_EQ(back->left_out, c.left_out);
  EXPECT_EQ(back->note, c.note);
  EXPECT_FALSE(decode_collected(encode(Collected{0, 0, 0, std::string(kMaxMessage + 1, 'x')})));
  EXPECT_FALSE(decode_collected("short"));
  EXPECT_TRUE(is_guest_message(MsgType::output_data));
  EXPECT_TRUE(is_guest_message(MsgType::collected));
  EXPECT_TRUE(is_host_message(MsgType::collect));
}

TEST(Messages, ExitCarriesTheCoverageFlagOnlyWhenSet) {
  Exit plain{false, 0, 1, 2, 0, std::nullopt};
  EXPECT_FALSE(decode_exit(encode(plain))->coverage.has_value());
  Exit with{false, 0, 1, 2, 0, true};
  EXPECT_EQ(encode(with).size(), encode(plain).size() + 1);
  EXPECT_EQ(decode_exit(encode(with))->coverage, std::optional<bool>(true));
  EXPECT_FALSE(decode_exit(encode(plain) + std::string(1, '\x02')));  // a flag is 0 or 1
  EXPECT_FALSE(decode_exit(encode(with) + "x"));
}
