// See command_line.hpp.
#include "common/command_line.hpp"

#include <fmt/format.h>

namespace meshbus_examples {

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, const std::function<void()>& check) {
  const auto program = app.get_name();
  try {
    app.parse(argc, argv);
    check();
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help
    fmt::print(stderr, "{}: {} (see {} --help)\n", program, e.what(), program);
    return 2;
  } catch (const usage_error& e) {
    fmt::print(stderr, "{}: {} (see {} --help)\n", program, e.what(), program);
    return 2;
  }
  return std::nullopt;
}

}  // namespace meshbus_examples
