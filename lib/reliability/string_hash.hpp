// Transparent hashing, so maps keyed by std::string are searched by string_view
// without building a string.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace meshbus::reliability {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace meshbus::reliability
