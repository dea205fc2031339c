#include "core/json_split.hpp"

#include <cmath>
#include <cstdlib>
#include <vector>

namespace ebridge {

namespace {

/// One pass over the text with an explicit stack of open containers.
class splitter {
public:
  splitter(std::string_view text,
           const std::function<void(std::string_view)>& report,
           size_t max_depth)
    : text_(text), report_(report), max_depth_(max_depth) {
    // nop
  }

  json_split_result run() {
    if (text_.substr(0, 3) == "\xEF\xBB\xBF")
      pos_ = 3;
    skip_ws();
    if (at_end())
      return fail("no JSON value");
    result_.array = peek() == '[';
    auto root_start = pos_;
    for (;;) {
      // A value is expected here.
      skip_ws();
      if (at_end())
        return fail("the text ends where a value should be");
      if (in_root_array())
        element_start_ = pos_;
      auto c = peek();
      if (c == '[' || c == '{') {
        if (stack_.size() >= max_depth_) {
          auto failed = fail("arrays and objects nest deeper than "
                             + std::to_string(max_depth_) + " levels");
          failed.too_deep = true;
          return failed;
        }
        stack_.push_back(c);
        ++pos_;
        skip_ws();
        if (!at_end() && peek() == (c == '[' ? ']' : '}')) {
          ++pos_;
          stack_.pop_back();
        } else if (c == '{' && !member_key()) {
          return fail(error_);
        } else {
          continue;
        }
      } else if (!scalar()) {
        return fail(error_);
      }
      // A value ended: close containers and find the next value.
      for (;;) {
        if (in_root_array()) {
          report(element_start_);
        }
        skip_ws();
        if (stack_.empty()) {
          if (!at_end())
            return fail("more text after the JSON value");
          if (!result_.array) {
            auto end = text_.size();
            while (end > root_start && is_ws(text_[end - 1]))
              --end;
            report(root_start, end);
          }
          result_.ok = true;
          return std::move(result_);
        }
        if (at_end())
          return fail("the text ends inside an array or object");
        auto open = stack_.back();
        auto c2 = peek();
        if (c2 == ',') {
          ++pos_;
          if (open == '{' && !member_key())
            return fail(error_);
          break;
        }
        if (c2 != (open == '[' ? ']' : '}'))
          return fail(open == '[' ? "expected ',' or ']'"
                                  : "expected ',' or '}'");
        ++pos_;
        stack_.pop_back();
      }
    }
  }

private:
  static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
  }

  bool at_end() const {
    return pos_ >= text_.size();
  }

  char peek() const {
    return text_[pos_];
  }

  uint8_t byte(size_t at) const {
    return static_cast<uint8_t>(text_[at]);
  }

  void skip_ws() {
    while (!at_end() && is_ws(peek()))
      ++pos_;
  }

  bool in_root_array() const {
    return result_.array && stack_.size() == 1;
  }

  void report(size_t start, size_t end) {
    ++result_.count;
    report_(text_.substr(start, end - start));
  }

  void report(size_t start) {
    report(start, pos_);
  }

  json_split_result fail(const std::string& why) {
    json_split_result failed;
    failed.error = "invalid JSON at byte " + std::to_string(pos_) + ": " + why;
    return failed;
  }

  bool error(std::string why) {
    error_ = std::move(why);
    return false;
  }

  /// An object member's key and colon; leaves `pos_` at its value.
  bool member_key() {
    skip_ws();
    if (at_end() || peek() != '"')
      return error("expected a string key");
    if (!string())
      return false;
    skip_ws();
    if (at_end() || peek() != ':')
      return error("expected ':' after a key");
    ++pos_;
    return true;
  }

  bool scalar() {
    auto c = peek();
    if (c == '"')
      return string();
    if (c == '-' || (c >= '0' && c <= '9'))
      return number();
    for (std::string_view word : {"true", "false", "null"})
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return true;
      }
    return error("unexpected character");
  }

  bool hex4(uint32_t& out) {
    if (text_.size() - pos_ < 4)
      return error("a \\u escape needs four hex digits");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      auto h = text_[pos_++];
      out <<= 4;
      if (h >= '0' && h <= '9')
        out |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f')
        out |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        out |= static_cast<uint32_t>(h - 'A' + 10);
      else
        return error("a \\u escape needs four hex digits");
    }
    return true;
  }

  bool escape() {
    if (at_end())
      return error("the text ends inside a string");
    auto c = text_[pos_++];
    switch (c) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        return true;
      case 'u':
        break;
      default:
        return error("invalid escape in a string");
    }
    uint32_t unit = 0;
    if (!hex4(unit))
      return false;
    if (unit >= 0xDC00 && unit <= 0xDFFF)
      return error("a low surrogate without a high one");
    if (unit < 0xD800 || unit > 0xDBFF)
      return true;
    if (text_.substr(pos_, 2) != "\\u")
      return error("a high surrogate without a low one");
    pos_ += 2;
    if (!hex4(unit))
      return false;
    if (unit < 0xDC00 || unit > 0xDFFF)
      return error("a high surrogate without a low one");
    return true;
  }

  /// One UTF-8 sequence of 2 to 4 bytes (RFC 3629: no overlong forms, no
  /// surrogates, nothing past U+10FFFF).
  bool utf8() {
    auto lead = byte(pos_);
    size_t more = 0;
    uint8_t lo = 0x80;
    uint8_t hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      more = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      more = 2;
      if (lead == 0xE0)
        lo = 0xA0;
      else if (lead == 0xED)
        hi = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      more = 3;
      if (lead == 0xF0)
        lo = 0x90;
      else if (lead == 0xF4)
        hi = 0x8F;
    } else {
      return error("ill-formed UTF-8 in a string");
    }
    if (text_.size() - pos_ <= more)
      return error("ill-formed UTF-8 in a string");
    for (size_t i = 1; i <= more; ++i) {
      auto b = byte(pos_ + i);
      if (b < lo || b > hi)
        return error("ill-formed UTF-8 in a string");
      lo = 0x80;
      hi = 0xBF;
    }
    pos_ += more + 1;
    return true;
  }

  bool string() {
    ++pos_; // the opening quote
    for (;;) {
      if (at_end())
        return error("the text ends inside a string");
      auto b = byte(pos_);
      if (b == '"') {
        ++pos_;
        return true;
      }
      if (b < 0x20)
        return error("a control character in a string");
      if (b == '\\') {
        ++pos_;
        if (!escape())
          return false;
      } else if (b >= 0x80) {
        if (!utf8())
          return false;
      } else {
        ++pos_;
      }
    }
  }

  size_t digits() {
    auto start = pos_;
    while (!at_end() && peek() >= '0' && peek() <= '9')
      ++pos_;
    return pos_ - start;
  }

  bool number() {
    auto start = pos_;
    if (peek() == '-')
      ++pos_;
    if (at_end() || peek() < '0' || peek() > '9')
      return error("a number needs digits");
    if (peek() == '0')
      ++pos_;
    else
      digits();
    if (!at_end() && peek() == '.') {
      ++pos_;
      if (digits() == 0)
        return error("a number needs digits after '.'");
    }
    bool exponent = false;
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      exponent = true;
      ++pos_;
      if (!at_end() && (peek() == '+' || peek() == '-'))
        ++pos_;
      if (digits() == 0)
        return error("a number needs digits in its exponent");
    }
    // Only an exponent or hundreds of digits can leave a double's range.
    if (exponent || pos_ - start > 300) {
      std::string token{text_.substr(start, pos_ - start)};
      if (std::isinf(std::strtod(token.c_str(), nullptr)))
        return error("a number out of range");
    }
    return true;
  }

  std::string_view text_;
  const std::function<void(std::string_view)>& report_;
  size_t max_depth_;
  size_t pos_ = 0;
  size_t element_start_ = 0;
  std::vector<char> stack_;
  std::string error_;
  json_split_result result_;
};

} // namespace

json_split_result
split_json(std::string_view text,
           const std::function<void(std::string_view)>& report,
           size_t max_depth) {
  return splitter{text, report, max_depth}.run();
}

} // namespace ebridge
