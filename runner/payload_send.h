// Sending a payload to the guest agent: one request per entry, file contents streamed
// after their put_file header. Split from run_in_vm.cpp so it is tested against a
// socket peer (tests/unit/runner/payload_send_test.cpp).
#pragma once

#include "common/result.h"
#include "runner/agent_client.h"
#include "runner/payload.h"

#include <cstddef>

namespace kiln::runner {

/// Queue every payload entry on `agent`; returns how many replies they will produce.
Result<size_t> queue_payload(AgentClient& agent, const Payload& payload);

}  // namespace kiln::runner
