// meshbus/topic.hpp: the public face of the wire layer's topic rules.
#include "meshbus/topic.hpp"

#include "lib/wire/topic.hpp"
#include "meshbus/error.hpp"

namespace meshbus {

std::string topic_error(std::string_view topic) { return wire::topic_error(topic); }

std::string pattern_error(std::string_view pattern) {
  wire::pattern p;
  std::string err;
  wire::pattern::compile(pattern, p, err);
  return err;
}

bool topic_matches(std::string_view pattern, std::string_view topic) {
  wire::pattern p;
  std::string err;
  if (!wire::pattern::compile(pattern, p, err)) throw error(errc::invalid_topic, err);
  return p.matches(topic);
}

}  // namespace meshbus
