// Must NOT compile: typed members of Node used without <meshbus/typed.hpp>. The
// ctest passes when the compiler's error names the header to include (rather than
// the program compiling and then failing to link).
#include <meshbus/meshbus.hpp>

#include <cstdint>
#include <string_view>

namespace {
struct Ping {
  static constexpr std::string_view event_name = "compile.ping";
  static constexpr std::uint32_t event_version = 1;
};
}  // namespace

void use(meshbus::Node& node) {
  (void)node.publish(Ping{});
  (void)node.subscribe<Ping>([](const Ping&) {});
  (void)node.request<Ping, Ping>(Ping{});
}
