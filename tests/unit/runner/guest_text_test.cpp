// Escaping text from the guest before it reaches the user's terminal.
#include "runner/guest_text.h"

#include <gtest/gtest.h>

using kiln::runner::console_tail_of;
using kiln::runner::escape_guest_text;

TEST(GuestText, PlainTextAndValidUtf8PassUnchanged) {
  EXPECT_EQ(escape_guest_text("cannot execute /bin/x: Permission denied"),
            "cannot execute /bin/x: Permission denied");
  EXPECT_EQ(escape_guest_text("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x94\xa5"), "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x94\xa5");
}

TEST(GuestText, TerminalControlsAreEscaped) {
  // Clear screen, set title, move the cursor home: none of it may reach the terminal.
  EXPECT_EQ(escape_guest_text("a\x1b[2Jb\x1b]0;owned\x07"), "a\\x1b[2Jb\\x1b]0;owned\\x07");
  EXPECT_EQ(escape_guest_text("ok\rFAIL"), "ok\\rFAIL");
  EXPECT_EQ(escape_guest_text(std::string("nul\0del\x7f", 8)), "nul\\x00del\\x7f");
  EXPECT_EQ(escape_guest_text("back\\slash"), "back\\\\slash");
}

TEST(GuestText, OneLineUnlessMultiline) {
  EXPECT_EQ(escape_guest_text("a\nb\tc"), "a\\nb\\tc");
  EXPECT_EQ(escape_guest_text("a\nb\tc", true), "a\nb\tc");
  // The serial console ends lines with CR LF: a line end, not an escape per line.
  EXPECT_EQ(escape_guest_text("line 1\r\nline 2\r\n", true), "line 1\nline 2\n");
  // A lone CR would let a later line overwrite this one.
  EXPECT_EQ(escape_guest_text("done\rhidden\n", true), "done\\rhidden\n");
  EXPECT_EQ(escape_guest_text("x\x1b[1A\n", true), "x\\x1b[1A\n");
}

TEST(GuestText, C1ControlsAndBidiOverridesAreEscaped) {
  // U+009B is CSI as one code point; U+0085 NEL; U+202E right-to-left override; U+2066 isolate.
  EXPECT_EQ(escape_guest_text("a\xc2\x9b" "2Jb"), "a\\u{009b}2Jb");
  EXPECT_EQ(escape_guest_text("\xc2\x85"), "\\u{0085}");
  EXPECT_EQ(escape_guest_text("abc\xe2\x80\xae" "fed"), "abc\\u{202e}fed");
  EXPECT_EQ(escape_guest_text("\xe2\x81\xa6x"), "\\u{2066}x");
  EXPECT_EQ(escape_guest_text("\xc2\xa0"), "\xc2\xa0");  // U+00A0 is printable
}

TEST(GuestText, InvalidUtf8BecomesHexBytes) {
  EXPECT_EQ(escape_guest_text("a\xff" "b"), "a\\xffb");
  EXPECT_EQ(escape_guest_text("\xc3"), "\\xc3");                      // truncated
  EXPECT_EQ(escape_guest_text("\xc3(x"), "\\xc3(x");                  // bad continuation
  EXPECT_EQ(escape_guest_text("\xc0\x9b"), "\\xc0\\x9b");             // overlong ESC-like form
  EXPECT_EQ(escape_guest_text("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");    // overlong '/'
  EXPECT_EQ(escape_guest_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");    // UTF-16 surrogate
  EXPECT_EQ(escape_guest_text("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
  EXPECT_EQ(escape_guest_text("\x9b"), "\\x9b");                      // a lone C1 byte
}

TEST(GuestText, ConsoleTailIsBoundedStartsAtALineAndIsEscaped) {
  EXPECT_EQ(console_tail_of(""), "(the guest printed nothing)");
  EXPECT_EQ(console_tail_of("[ 0.1] booted\r\n\x1b[31mpanic\r\n"), "[ 0.1] booted\n\\x1b[31mpanic\n");
  std::string console;
  for (int i = 0; i < 500; ++i) console += "kernel line " + std::to_string(i) + "\r\n";
  std::string tail = console_tail_of(console);
  EXPECT_EQ(tail.rfind("...\nkernel line ", 0), 0u) << tail.substr(0, 40);
  EXPECT_LE(tail.size(), 3100u);
  EXPECT_NE(tail.find("kernel line 499\n"), std::string::npos);
  EXPECT_EQ(tail.find('\r'), std::string::npos);
}
