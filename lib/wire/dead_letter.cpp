// Dead-letter topic naming; see dead_letter.hpp.
#include "lib/wire/dead_letter.hpp"

#include "lib/wire/topic.hpp"

namespace meshbus::wire {

std::string dead_letter_topic(std::string_view original_topic) {
  std::string topic(dead_letter_topic_root);
  if (topic.size() + 1 + original_topic.size() > max_topic_length) return topic;
  topic += '.';
  topic.append(original_topic);
  return topic;
}

}  // namespace meshbus::wire
