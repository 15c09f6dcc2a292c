/// @file
/// Topic and pattern syntax, for applications that want to check or match names
/// the way a Node does. Topics are dot-separated segments of UTF-8 (no spaces or
/// control characters, at most 255 bytes); patterns may use `*` for exactly one
/// segment and `**` for any number of segments (zero or more). Topics starting
/// with '$' are reserved for meshbus.
#pragma once

#include <string>
#include <string_view>

namespace meshbus {

/// Empty when `topic` can be published on; otherwise a sentence saying why not.
std::string topic_error(std::string_view topic);
/// Empty when `pattern` can be subscribed to; otherwise a sentence saying why not.
std::string pattern_error(std::string_view pattern);
/// True when `topic` matches `pattern`. Throws meshbus::error(invalid_topic) for a bad pattern.
bool topic_matches(std::string_view pattern, std::string_view topic);

}  // namespace meshbus
