// The ebridge program: parses options, then runs one command.
#include <iostream>
#include <string>
#include <vector>

#include "app/node.hpp"
#include "config/options.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/version.hpp"

int main(int argc, char** argv) {
  using namespace ebridge;
  std::vector<std::string> args{argv + 1, argv + argc};
  auto inv = parse_invocation(args, process_environment());
  if (!inv) {
    std::cerr << "ebridge: " << error_message(inv.error()) << '\n';
    return exit_usage;
  }
  if (inv->help) {
    std::cout << help_text();
    return exit_ok;
  }
  if (inv->version) {
    std::cout << "ebridge " << version << '\n';
    return exit_ok;
  }
  log::set_level(inv->opts.log);
  for (auto& warning : inv->warnings)
    log::warn("config", warning);
  const auto& cmd = inv->command;
  if (cmd == "ref")
    return run_ref(inv->args);
  if (!inv->args.empty()) {
    std::cerr << "ebridge " << cmd << ": unexpected argument " << inv->args[0]
              << '\n';
    return exit_usage;
  }
  if (cmd == "serve")
    return run_serve(inv->opts);
  if (cmd == "migrate")
    return run_migrate(inv->opts);
  if (cmd.empty())
    std::cerr << "ebridge: no command given\n";
  else
    std::cerr << "ebridge: unknown command " << cmd << '\n';
  std::cerr << "usage: ebridge [OPTIONS] serve|migrate|ref TAGS "
               "(see ebridge --help)\n";
  return exit_usage;
}
