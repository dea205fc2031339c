#include "core/error.hpp"

#include <caf/sec.hpp>

namespace ebridge {

const char* to_string(ec code) {
  switch (code) {
    case ec::none:
      return "none";
    case ec::invalid_tags:
      return "invalid_tags";
    case ec::invalid_input:
      return "invalid_input";
    case ec::invalid_config:
      return "invalid_config";
    case ec::database_unavailable:
      return "database_unavailable";
    case ec::database_error:
      return "database_error";
    case ec::schema_mismatch:
      return "schema_mismatch";
    case ec::not_found:
      return "not_found";
    case ec::bad_row:
      return "bad_row";
    case ec::timeout:
      return "timeout";
    case ec::shutting_down:
      return "shutting_down";
    case ec::store_error:
      return "store_error";
    case ec::restarting:
      return "restarting";
  }
  return "unknown";
}

std::string render_error(uint8_t code, caf::atom_value,
                         const caf::message& context) {
  std::string result = to_string(static_cast<ec>(code));
  if (context.match_elements<std::string>()) {
    result += ": ";
    result += context.get_as<std::string>(0);
  }
  return result;
}

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  if (err.category() == error_category)
    return render_error(err.code(), err.category(), err.context());
  if (err.category() == caf::atom("system"))
    return to_string(static_cast<caf::sec>(err.code()));
  return to_string(err);
}

std::string error_message(const caf::error& err) {
  if (err && err.category() == error_category
      && err.context().match_elements<std::string>())
    return err.context().get_as<std::string>(0);
  return describe(err);
}

bool has_code(const caf::error& err, ec code) {
  return err && err.category() == error_category
         && err.code() == static_cast<uint8_t>(code);
}

caf::error make_error(ec code) {
  return caf::error{static_cast<uint8_t>(code), error_category};
}

caf::error make_error(ec code, std::string context) {
  return caf::error{static_cast<uint8_t>(code), error_category,
                    caf::make_message(std::move(context))};
}

} // namespace ebridge
