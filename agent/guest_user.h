// The user a command runs as, resolved in the guest's own /etc/passwd and /etc/group
// (the image's, for an OCI image guest), with the OCI config's User syntax: "name",
// "uid", "name:group", "uid:gid". Like a container runtime: a numeric uid absent from
// passwd still runs (gid 0 unless given), a name that is absent is an error.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace kiln::agent {

struct GuestUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  ///< supplementary groups from /etc/group
  std::string home;           ///< from passwd; "/" when unknown
  std::string name;           ///< "" when the uid has no passwd entry
};

/// Resolve `spec` against the passwd and group texts. Returns "" and fills `out`, or what is wrong.
std::string resolve_guest_user(std::string_view spec, std::string_view passwd, std::string_view group,
                               GuestUser& out);

/// resolve_guest_user() with the guest's /etc/passwd and /etc/group.
std::string resolve_guest_user(std::string_view spec, GuestUser& out);

}  // namespace kiln::agent
