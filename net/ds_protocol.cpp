#include "net/ds_protocol.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "core/error.hpp"

namespace ebridge::ds {

namespace {

constexpr uint64_t max_safe_integer = (uint64_t{1} << 53) - 1;

/// The epoch of the cursor intervals: 2024-10-09T00:00:00Z.
constexpr int64_t cursor_epoch_ms = 1728432000000;
constexpr int64_t cursor_interval_ms = 20000;

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
}

std::optional<uint64_t> to_u64(std::string_view s) {
  if (!all_digits(s) || s.size() > 19)
    return std::nullopt;
  uint64_t x = 0;
  for (char c : s)
    x = x * 10 + static_cast<uint64_t>(c - '0');
  return x;
}

caf::error bad(std::string message) {
  return make_error(ec::invalid_input, std::move(message));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

} // namespace

std::string format_offset(uint64_t position) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "0000000000000000_%016llu",
                static_cast<unsigned long long>(position));
  return buf;
}

caf::expected<offset_spec> parse_offset(std::string_view text) {
  offset_spec result;
  if (text == "-1")
    return result;
  if (text == "now") {
    result.what = offset_spec::kind::now;
    return result;
  }
  if (text.size() == 33 && text[16] == '_' && all_digits(text.substr(0, 16))
      && all_digits(text.substr(17))) {
    if (text.substr(0, 16) != "0000000000000000")
      return bad("offset " + std::string{text}
                 + " is not one of this server's");
    result.what = offset_spec::kind::at;
    result.position = *to_u64(text.substr(17));
    return result;
  }
  return bad("invalid offset: expected -1, now or an offset from "
             "Stream-Next-Offset");
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size())
      return std::nullopt;
    auto hi = hex_value(text[i + 1]);
    auto lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

caf::expected<std::multimap<std::string, std::string>>
parse_query(std::string_view target) {
  std::multimap<std::string, std::string> result;
  auto q = target.find('?');
  if (q == std::string_view::npos)
    return result;
  auto query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{}
                                          : query.substr(amp + 1);
    if (part.empty())
      continue;
    auto eq = part.find('=');
    auto name = percent_decode(part.substr(0, eq));
    auto value = percent_decode(
      eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    if (!name || !value)
      return bad("malformed percent-encoding in the query string");
    result.emplace(std::move(*name), std::move(*value));
  }
  return result;
}

bool is_text(std::string_view content_type) {
  auto type = media_type(content_type);
  return type == "application/json" || type.compare(0, 5, "text/") == 0;
}

caf::expected<std::optional<producer_stamp>>
parse_producer(const std::string* id, const std::string* epoch,
               const std::string* seq) {
  if (id == nullptr && epoch == nullptr && seq == nullptr)
    return std::optional<producer_stamp>{};
  if (id == nullptr || epoch == nullptr || seq == nullptr)
    return bad("Producer-Id, Producer-Epoch and Producer-Seq must be sent "
               "together");
  if (id->empty())
    return bad("Producer-Id must not be empty");
  auto e = to_u64(*epoch);
  if (!e || *e > max_safe_integer)
    return bad("Producer-Epoch must be an integer in 0-9007199254740991");
  auto s = to_u64(*seq);
  if (!s || *s > max_safe_integer)
    return bad("Producer-Seq must be an integer in 0-9007199254740991");
  return std::optional<producer_stamp>{producer_stamp{*id, *e, *s}};
}

caf::expected<uint64_t> parse_ttl(std::string_view text) {
  if (text == "0")
    return uint64_t{0};
  auto value = to_u64(text);
  if (!value || text.front() == '0')
    return bad("Stream-TTL must be 0 or a positive integer of seconds");
  return *value;
}

caf::expected<int64_t> parse_rfc3339_ms(std::string_view t) {
  auto fail = [&] {
    return bad("Stream-Expires-At must be an RFC 3339 timestamp, got \""
               + std::string{t} + "\"");
  };
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)
  if (t.size() < 20 || t[4] != '-' || t[7] != '-'
      || (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || t[13] != ':'
      || t[16] != ':')
    return fail();
  auto num = [&](size_t pos, size_t len) -> std::optional<uint64_t> {
    return to_u64(t.substr(pos, len));
  };
  auto year = num(0, 4), month = num(5, 2), day = num(8, 2), hour = num(11, 2),
       minute = num(14, 2), second = num(17, 2);
  if (!year || !month || !day || !hour || !minute || !second || *month < 1
      || *month > 12 || *day < 1 || *day > 31 || *hour > 23 || *minute > 59
      || *second > 60)
    return fail();
  size_t pos = 19;
  int64_t millis = 0;
  if (pos < t.size() && t[pos] == '.') {
    size_t start = ++pos;
    while (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos])))
      ++pos;
    if (pos == start)
      return fail();
    auto frac = std::string{t.substr(start, std::min<size_t>(pos - start, 3))};
    frac.resize(3, '0');
    millis = static_cast<int64_t>(*to_u64(frac));
  }
  int64_t offset_min = 0;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos + 6 == t.size() && (t[pos] == '+' || t[pos] == '-')
             && t[pos + 3] == ':') {
    auto oh = num(pos + 1, 2), om = num(pos + 4, 2);
    if (!oh || !om || *oh > 23 || *om > 59)
      return fail();
    offset_min = static_cast<int64_t>(*oh * 60 + *om);
    if (t[pos] == '-')
      offset_min = -offset_min;
    pos += 6;
  } else {
    return fail();
  }
  if (pos != t.size())
    return fail();
  auto days = days_from_civil(static_cast<int64_t>(*year),
                              static_cast<unsigned>(*month),
                              static_cast<unsigned>(*day));
  int64_t secs = days * 86400 + static_cast<int64_t>(*hour) * 3600
                 + static_cast<int64_t>(*minute) * 60
                 + static_cast<int64_t>(*second) - offset_min * 60;
  return secs * 1000 + millis;
}

std::string next_cursor(int64_t now_ms, const std::string* client_cursor,
                        uint64_t jitter) {
  auto interval = static_cast<uint64_t>(
    std::max<int64_t>(0, (now_ms - cursor_epoch_ms) / cursor_interval_ms));
  if (client_cursor != nullptr) {
    auto client = to_u64(*client_cursor);
    // Never repeat or go back: a client that is not behind gets more.
    if (client && *client >= interval)
      return std::to_string(*client + 1 + jitter % 180);
  }
  return std::to_string(interval);
}

std::string base64(std::string_view bytes) {
  static constexpr char table[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16)
                 | (static_cast<uint8_t>(bytes[i + 1]) << 8)
                 | static_cast<uint8_t>(bytes[i + 2]);
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += table[(n >> 6) & 63];
    out += table[n & 63];
  }
  if (i < bytes.size()) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size())
      n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

void append_sse_event(std::string& out, std::string_view name,
                      std::string_view payload) {
  out += "event: ";
  out += name;
  out += '\n';
  size_t start = 0;
  for (size_t i = 0; i <= payload.size(); ++i) {
    bool end = i == payload.size();
    if (!end && payload[i] != '\r' && payload[i] != '\n')
      continue;
    out += "data:";
    out += payload.substr(start, i - start);
    out += '\n';
    if (!end && payload[i] == '\r' && i + 1 < payload.size()
        && payload[i + 1] == '\n')
      ++i;
    start = i + 1;
  }
  out += '\n';
}

} // namespace ebridge::ds
