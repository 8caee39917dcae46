// Text from the guest shown to the user: error strings, exec failures, the agent's
// version, the console log. The guest is untrusted, and a terminal obeys escape
// sequences: such text is escaped so it can only ever print as text. (The command's
// own stdout and stderr are its output, passed through untouched.)
#pragma once

#include "vmm/engine.h"

#include <string>
#include <string_view>

namespace kiln::runner {

/// `text` made safe to print: printable ASCII and valid UTF-8 stay as they are;
/// ESC, CR and the other C0 controls, DEL, C1 controls (U+0080-U+009F) and the
/// Unicode bidirectional overrides become \xNN or \u{NNNN}; bytes that are not
/// valid UTF-8 become \xNN; a backslash becomes \\. With `multiline`, LF and TAB
/// stay (and CR LF, the serial console's line end, becomes LF); else they are
/// escaped too, so the result is one line.
std::string escape_guest_text(std::string_view text, bool multiline = false);

/// The last ~3000 bytes of the guest's console log (from a line start when one is
/// near), escaped, for an error message; "(the guest printed nothing)" if empty.
std::string guest_console_tail(vmm::Vm& vm);

/// The same for a console log already read (what guest_console_tail shows).
std::string console_tail_of(std::string_view console);

/// `reason`, then the guest console's tail under a "--- guest console (tail) ---" line:
/// how kiln ends a test's output on a VM-level failure (a kiln error, a timeout, the
/// guest's out-of-memory killer). ctest shows a test's own output and nothing else in
/// --output-on-failure and JUnit's system-out (3.25 writes an empty failure message), so
/// kiln's reason and what the guest's kernel said must be in it.
std::string with_console_tail(std::string_view reason, vmm::Vm& vm);

}  // namespace kiln::runner
