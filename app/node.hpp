#pragma once

#include "config/options.hpp"

namespace ebridge {

/// Exit codes of the program.
enum exit_code : int { exit_ok = 0, exit_failure = 1, exit_usage = 2 };

/// `ebridge migrate`: applies the migrations and checks the schema.
int run_migrate(const options& opts);

/// `ebridge serve`: migrates, starts the actors and the HTTP server, and runs
/// until SIGINT or SIGTERM, then shuts down in order.
int run_serve(const options& opts);

/// `ebridge ref TAGS`: prints the source ref and stream path of a tag set.
int run_ref(const std::vector<std::string>& args);

} // namespace ebridge
