// The names inside a layer tarball, read as OCI's image-spec (layer.md) defines them:
// a member path normalised to one form, and whiteout markers told apart from files.
// Everything here is pure string work; layer_index.cpp says which layer the name is in.
#pragma once

#include "common/result.h"

#include <string>
#include <string_view>

namespace kiln::rootfs {

/// Longest member path and name kiln accepts: Linux's PATH_MAX and NAME_MAX (a squashfs
/// directory entry holds at most 256 bytes of name; tar2sqfs refuses longer ones).
inline constexpr size_t kMaxPathBytes = 4096;
inline constexpr size_t kMaxNameBytes = 255;

/// `raw` as a path relative to the image root: leading "/" and "./" stripped, "." and
/// empty components dropped, no trailing "/" ("" is the root itself). A ".." component
/// (which could reach outside the root), an over-long path or name, or an empty `raw`
/// is an error saying which. Never touches the filesystem.
Result<std::string> normalize_member_path(std::string_view raw);

/// The directory part of a normalised path ("" for a top-level name or the root).
std::string_view parent_of(std::string_view path);

/// What a normalised member path means under OCI's whiteout rules.
struct Whiteout {
  enum class Kind {
    none,    ///< an ordinary member
    remove,  ///< ".wh.NAME": NAME (and everything below it) from lower layers is deleted
    opaque,  ///< ".wh..wh..opq": the directory's children from lower layers are hidden
    ignore,  ///< another ".wh..wh." name (aufs bookkeeping such as .wh..wh.plnk): no file
  };
  Kind kind = Kind::none;
  std::string target;  ///< remove: the deleted path; opaque: the directory ("" = the root)
};

/// Classify a normalised path. A ".wh." name whose target would be "." or ".." is an
/// error (it could only be an attempt to delete the root or to leave it).
Result<Whiteout> classify_whiteout(const std::string& path);

}  // namespace kiln::rootfs
