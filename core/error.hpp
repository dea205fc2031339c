#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>

namespace ebridge {

/// The project's error codes: one category for everything ebridge reports.
enum class ec : uint8_t {
  none = 0,
  /// Tags are not a JSON object of strings.
  invalid_tags,
  /// A request or other outside input is malformed.
  invalid_input,
  /// A configuration value is missing, malformed or out of range.
  invalid_config,
  /// Postgres cannot be reached right now; retrying later may succeed.
  database_unavailable,
  /// Postgres answered with an error.
  database_error,
  /// The database schema lacks something ebridge needs.
  schema_mismatch,
  /// The thing asked for does not exist.
  not_found,
  /// A row read from outside has an unexpected shape.
  bad_row,
  /// The operation timed out.
  timeout,
  /// The component is shutting down.
  shutting_down,
  /// The stream store could not do it: a disk that failed, a log that is
  /// corrupt, or a refusal by the stream's rules (a stale producer epoch).
  store_error,
  /// The node's actors are being restarted; retrying later may succeed.
  restarting,
};

/// The CAF error category of ::ec.
inline constexpr caf::atom_value error_category = caf::atom("ebridge");

const char* to_string(ec code);

/// Renders an error of the ebridge category as "code: context".
std::string render_error(uint8_t code, caf::atom_value category,
                         const caf::message& context);

/// Renders any error: ours with their context, CAF's with CAF's renderer.
std::string describe(const caf::error& err);

/// The message of an error: the context alone for ours, else `describe`.
std::string error_message(const caf::error& err);

caf::error make_error(ec code);

/// Whether `err` is ours and has `code`.
bool has_code(const caf::error& err, ec code);

caf::error make_error(ec code, std::string context);

} // namespace ebridge

CAF_ERROR_CODE_ENUM(ebridge::ec, "ebridge")
