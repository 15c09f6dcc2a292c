// See command_line.hpp.
#include "common/command_line.hpp"

namespace meshbus_examples {

bool for_each_option(int argc, char** argv, const option_handler& apply) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") return false;
    const auto eq = arg.find('=');
    const auto option = arg.substr(0, eq);
    auto value = [&]() -> std::string_view {
      if (eq != std::string_view::npos) return arg.substr(eq + 1);
      if (i + 1 >= argc) throw usage_error(fmt::format("{} needs a value", option));
      return argv[++i];
    };
    apply(option, value);
  }
  return true;
}

std::optional<int> parse_command_line(int argc, char** argv, std::string_view program, std::string_view usage,
                                      const option_handler& apply, const std::function<void()>& check) {
  try {
    if (!for_each_option(argc, argv, apply)) {
      fmt::print("{}", usage);
      return 0;
    }
    check();
  } catch (const usage_error& e) {
    fmt::print(stderr, "{}: {} (see {} --help)\n", program, e.what(), program);
    return 2;
  }
  return std::nullopt;
}

}  // namespace meshbus_examples
