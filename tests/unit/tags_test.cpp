#define CAF_SUITE tags
#include <caf/test/unit_test.hpp>

#include "core/tags.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

// Expected JSON texts and refs below were computed with Node 20: the
// original's normalizeTags, JSON.stringify and hashString over charCodeAt.

using namespace ebridge;

namespace {

/// `to_json` of the parsed tags, or the rendered error: one string to compare.
std::string normalized(std::string_view json_text) {
  auto tags = parse_tags(json_text);
  return tags ? to_json(*tags) : describe(tags.error());
}

/// `source_ref` of the parsed tags, or the rendered error.
std::string ref_of(std::string_view json_text) {
  auto tags = parse_tags(json_text);
  return tags ? source_ref(*tags) : describe(tags.error());
}

/// The rendered error of parsing `json_text`, or "valid".
std::string error_of(std::string_view json_text) {
  auto tags = parse_tags(json_text);
  return tags ? "valid" : describe(tags.error());
}

std::string json_error_of(const nlohmann::json& value) {
  auto tags = tags_from_json(value);
  return tags ? "valid" : describe(tags.error());
}

std::vector<std::string> index_of(std::string_view json_text) {
  auto tags = parse_tags(json_text);
  return tags ? tags_index(*tags) : std::vector<std::string>{};
}

bool starts_with(const std::string& str, std::string_view prefix) {
  return str.compare(0, prefix.size(), prefix) == 0;
}

} // namespace

// -- the SEED vector and normalization ---------------------------------------

CAF_TEST(the seed vector hashes to its documented ref) {
  auto tags = parse_tags(R"({"demo_id":"X","role":"reviewer"})");
  CAF_REQUIRE(tags);
  CAF_CHECK_EQUAL(to_json(*tags), R"({"demo_id":"X","role":"reviewer"})");
  CAF_CHECK_EQUAL(source_ref(*tags), "52df825db9cb78ff");
  CAF_CHECK_EQUAL(stream_path(source_ref(*tags)),
                  "/_entities/52df825db9cb78ff");
}

CAF_TEST(the ref does not depend on the input key order) {
  CAF_CHECK_EQUAL(ref_of(R"({"role":"reviewer","demo_id":"X"})"),
                  "52df825db9cb78ff");
  CAF_CHECK_EQUAL(normalized(R"({"role":"reviewer","demo_id":"X"})"),
                  R"({"demo_id":"X","role":"reviewer"})");
}

CAF_TEST(pairs are exposed in normalized order) {
  auto tags = parse_tags(R"({"b":"2","10":"x","a":"1","9":"y"})");
  CAF_REQUIRE(tags);
  using pairs = std::vector<std::pair<std::string, std::string>>;
  CAF_CHECK(tags->pairs
            == pairs({{"9", "y"}, {"10", "x"}, {"a", "1"}, {"b", "2"}}));
}

CAF_TEST(the empty object is valid and has a stable ref) {
  auto tags = parse_tags("{}");
  CAF_REQUIRE(tags);
  CAF_CHECK(tags->pairs.empty());
  CAF_CHECK_EQUAL(to_json(*tags), "{}");
  CAF_CHECK_EQUAL(source_ref(*tags), "08f44b07b5901a25");
  CAF_CHECK(tags_index(*tags).empty());
  CAF_CHECK_EQUAL(normalized(" \t\n{ }\r\n"), "{}");
}

CAF_TEST(integer-like keys come first in ascending numeric order) {
  CAF_CHECK_EQUAL(normalized(R"({"10":"a","9":"b","a":"c"})"),
                  R"({"9":"b","10":"a","a":"c"})");
  CAF_CHECK_EQUAL(ref_of(R"({"10":"a","9":"b","a":"c"})"), "067cb69050bd70b4");
}

CAF_TEST(keys that are not canonical array indexes sort as strings) {
  // 4294967295 is 2^32 - 1, one past the largest array index.
  auto text = R"({"4294967295":"a","4294967294":"b","01":"c","-1":"d",)"
              R"("0":"e","1.5":"f"," 1":"g"})";
  CAF_CHECK_EQUAL(normalized(text),
                  R"({"0":"e","4294967294":"b"," 1":"g","-1":"d","01":"c",)"
                  R"("1.5":"f","4294967295":"a"})");
  CAF_CHECK_EQUAL(ref_of(text), "618263a9fdd75c56");
}

CAF_TEST(array_index accepts only canonical decimals below 2 to the 32 minus 1) {
  CAF_CHECK(array_index("0") == 0u);
  CAF_CHECK(array_index("9") == 9u);
  CAF_CHECK(array_index("10") == 10u);
  CAF_CHECK(array_index("4294967294") == 4294967294u);
  CAF_CHECK(!array_index("4294967295"));
  CAF_CHECK(!array_index("9999999999"));
  CAF_CHECK(!array_index("10000000000"));
  CAF_CHECK(!array_index(""));
  CAF_CHECK(!array_index("01"));
  CAF_CHECK(!array_index("00"));
  CAF_CHECK(!array_index("-1"));
  CAF_CHECK(!array_index("+1"));
  CAF_CHECK(!array_index("1.5"));
  CAF_CHECK(!array_index("1e3"));
  CAF_CHECK(!array_index(" 1"));
  CAF_CHECK(!array_index("1 "));
  CAF_CHECK(!array_index("a"));
}

CAF_TEST(keys sort by utf16 code units not utf8 bytes) {
  // U+FF61 is EF BD A1 in UTF-8 and U+1F600 is F0 9F 98 80, so byte order
  // puts U+FF61 first; in UTF-16 the emoji is D83D DE00 and comes first.
  auto text = "{\"\uFF61\":\"halfwidth\",\"\U0001F600\":\"grin\"}";
  CAF_CHECK_EQUAL(normalized(text),
                  "{\"\U0001F600\":\"grin\",\"\uFF61\":\"halfwidth\"}");
  CAF_CHECK_EQUAL(ref_of(text), "59d53ba356200300");
}

CAF_TEST(the empty key is valid and sorts first) {
  auto text = R"({"a":"","":"empty"})";
  CAF_CHECK_EQUAL(normalized(text), R"({"":"empty","a":""})");
  CAF_CHECK_EQUAL(ref_of(text), "0cae90934ce775ef");
}

CAF_TEST(duplicate keys keep the last value as JSON parse does) {
  CAF_CHECK_EQUAL(normalized(R"({"a":"1","b":"x","a":"2"})"),
                  R"({"a":"2","b":"x"})");
  CAF_CHECK_EQUAL(ref_of(R"({"a":"1","b":"x","a":"2"})"), "ff122894c2754a96");
  // Validation sees only the surviving value, as in the original.
  CAF_CHECK_EQUAL(normalized(R"({"a":1,"a":"x"})"), R"({"a":"x"})");
  CAF_CHECK_EQUAL(
    error_of(R"({"a":"x","a":1})"),
    R"(invalid_tags: tag "a" must have a string value, got number)");
}

CAF_TEST(the proto key is an ordinary tag) {
  // The original's assertTags drops "__proto__" (assigning it to a plain
  // object sets the prototype); the spec says keys are unrestricted.
  CAF_CHECK_EQUAL(normalized(R"({"__proto__":"x"})"), R"({"__proto__":"x"})");
  CAF_CHECK_EQUAL(ref_of(R"({"__proto__":"x"})"), "c90d3c6f9bd3cdd5");
}

CAF_TEST(tags_from_json accepts a value built in code) {
  nlohmann::json value = {{"role", "reviewer"}, {"demo_id", "X"}};
  auto tags = tags_from_json(value);
  CAF_REQUIRE(tags);
  CAF_CHECK_EQUAL(source_ref(*tags), "52df825db9cb78ff");
  CAF_CHECK(*tags == *parse_tags(R"({"demo_id":"X","role":"reviewer"})"));
  CAF_CHECK(*tags != *parse_tags(R"({"demo_id":"Y","role":"reviewer"})"));
}

// -- JSON.stringify escaping ---------------------------------------------------

CAF_TEST(js_string escapes quote backslash and control characters only) {
  CAF_CHECK_EQUAL(js_string(""), R"("")");
  CAF_CHECK_EQUAL(js_string("plain"), R"("plain")");
  CAF_CHECK_EQUAL(js_string("a\"b"), R"("a\"b")");
  CAF_CHECK_EQUAL(js_string("a\\b"), R"("a\\b")");
  CAF_CHECK_EQUAL(js_string("\b\f\n\r\t"), R"("\b\f\n\r\t")");
  CAF_CHECK_EQUAL(js_string(std::string_view{"\0", 1}), R"("\u0000")");
  CAF_CHECK_EQUAL(js_string("\x01\x0b\x1f"), R"("\u0001\u000b\u001f")");
  CAF_CHECK_EQUAL(js_string("\x1a"), R"("\u001a")");
  CAF_CHECK_EQUAL(js_string(" /"), R"(" /")");
  // DEL, non-ASCII and the JS line separators stay raw.
  CAF_CHECK_EQUAL(js_string("\x7f\u00e9\u2028\u2029\U0001F600"),
                  "\"\x7f\u00e9\u2028\u2029\U0001F600\"");
}

CAF_TEST(append_js_string appends to what is there) {
  std::string out = "x:";
  append_js_string(out, "a\nb");
  CAF_CHECK_EQUAL(out, R"(x:"a\nb")");
}

CAF_TEST(to_json escapes keys and values like JSON stringify) {
  auto text = R"({"q\"b\\":"\u0001\u001F\n\t\b\f\r\/\u2028\u007f\u00e9"})";
  CAF_CHECK_EQUAL(normalized(text),
                  "{\"q\\\"b\\\\\":\"\\u0001\\u001f\\n\\t\\b\\f\\r/"
                  "\u2028\x7f\u00e9\"}");
  CAF_CHECK_EQUAL(ref_of(text), "4fa3ee0fd30746df");
}

// -- UTF-16 semantics ----------------------------------------------------------

CAF_TEST(to_utf16 converts every utf8 length and makes surrogate pairs) {
  CAF_CHECK(to_utf16("") == u"");
  CAF_CHECK(to_utf16("az") == u"az");
  CAF_CHECK(to_utf16("\u00e9") == std::u16string{0x00E9});
  CAF_CHECK(to_utf16("\uFF61") == std::u16string{0xFF61});
  CAF_CHECK(to_utf16("\U0001F600") == (std::u16string{0xD83D, 0xDE00}));
  CAF_CHECK(to_utf16("\U00010000") == (std::u16string{0xD800, 0xDC00}));
  CAF_CHECK(to_utf16("\U0010FFFF") == (std::u16string{0xDBFF, 0xDFFF}));
  CAF_CHECK(to_utf16(std::string_view{"a\0b", 3})
            == (std::u16string{u'a', 0, u'b'}));
}

CAF_TEST(to_utf16 maps malformed utf8 to replacement characters) {
  // Not reachable through parse_tags, but the functions take any bytes.
  CAF_CHECK(to_utf16("a\xff"
                     "b")
            == (std::u16string{u'a', 0xFFFD, u'b'}));
  CAF_CHECK(to_utf16("\xe2\x82") == (std::u16string{0xFFFD, 0xFFFD}));
  CAF_CHECK(to_utf16("\xc0\xaf") == (std::u16string{0xFFFD, 0xFFFD}));
  CAF_CHECK(to_utf16("\xed\xa0\x80") == (std::u16string(3, 0xFFFD)));
  CAF_CHECK(to_utf16("\xf4\x90\x80\x80") == (std::u16string(4, 0xFFFD)));
}

CAF_TEST(fnv1a64_utf16 hashes utf16 code units) {
  CAF_CHECK_EQUAL(fnv1a64_utf16(""), 0xcbf29ce484222325u);
  CAF_CHECK_EQUAL(fnv1a64_utf16("a"), 0xaf63dc4c8601ec8cu);
  // Two units, D83D and DE00, not the four UTF-8 bytes.
  CAF_CHECK_EQUAL(fnv1a64_utf16("\U0001F600"), 0xe5e45a0a241b88d8u);
}

CAF_TEST(unicode beyond the bmp in keys and values hashes as surrogate pairs) {
  auto text = "{\"k\U0001F600\":\"v\U0010FFFF\U0001D11E\"}";
  CAF_CHECK_EQUAL(normalized(text),
                  "{\"k\U0001F600\":\"v\U0010FFFF\U0001D11E\"}");
  CAF_CHECK_EQUAL(ref_of(text), "a27e4d22b6f15c41");
  // The same text written with JSON surrogate escapes decodes identically.
  CAF_CHECK_EQUAL(ref_of(R"({"k\ud83d\ude00":"v\udbff\udfff\ud834\udd1e"})"),
                  "a27e4d22b6f15c41");
}

CAF_TEST(js_less orders like javascript sort) {
  // The order of Node's ["a","B","",...].sort().
  std::vector<std::string> expected{"",           "B",           "a",
                                    "ab",         "\uD7FF",      "\U00010000",
                                    "\U0001F600", "\U0001F600a", "\uE000",
                                    "\uFF61"};
  auto sorted = expected;
  std::reverse(sorted.begin(), sorted.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const std::string& x, const std::string& y) {
              return js_less(x, y);
            });
  CAF_CHECK_EQUAL(sorted, expected);
  for (const auto& x : expected) {
    CAF_CHECK(!js_less(x, x));
    for (const auto& y : expected)
      CAF_CHECK_EQUAL(js_less(x, y), to_utf16(x) < to_utf16(y));
  }
}

// -- the tags index ------------------------------------------------------------

CAF_TEST(tags_index holds each pair as a json array) {
  CAF_CHECK_EQUAL(index_of(R"({"role":"reviewer","demo_id":"X"})"),
                  (std::vector<std::string>{R"(["demo_id","X"])",
                                            R"(["role","reviewer"])"}));
}

CAF_TEST(tags_index sorts as strings not in javascript key order) {
  CAF_CHECK_EQUAL(index_of(R"({"10":"a","9":"b","a":"c"})"),
                  (std::vector<std::string>{R"(["10","a"])", R"(["9","b"])",
                                            R"(["a","c"])"}));
  CAF_CHECK_EQUAL(index_of(R"({"4294967294":"b","-1":"d","0":"e"," 1":"g"})"),
                  (std::vector<std::string>{R"([" 1","g"])", R"(["-1","d"])",
                                            R"(["0","e"])",
                                            R"(["4294967294","b"])"}));
}

CAF_TEST(tags_index escapes and sorts by utf16 code units) {
  CAF_CHECK_EQUAL(index_of(
                    "{\"\uFF61\":\"halfwidth\",\"\U0001F600\":\"grin\"}"),
                  (std::vector<std::string>{"[\"\U0001F600\",\"grin\"]",
                                            "[\"\uFF61\",\"halfwidth\"]"}));
  CAF_CHECK_EQUAL(index_of(R"({"q\"b\\":"\u0001\n/","":""})"),
                  (std::vector<std::string>{R"(["",""])",
                                            R"(["q\"b\\","\u0001\n/"])"}));
}

// -- refs and paths ------------------------------------------------------------

CAF_TEST(is_source_ref accepts exactly sixteen lowercase hex digits) {
  CAF_CHECK(is_source_ref("52df825db9cb78ff"));
  CAF_CHECK(is_source_ref("0000000000000000"));
  CAF_CHECK(is_source_ref("0123456789abcdef"));
  CAF_CHECK(!is_source_ref(""));
  CAF_CHECK(!is_source_ref("52df825db9cb78f"));
  CAF_CHECK(!is_source_ref("52df825db9cb78ff0"));
  CAF_CHECK(!is_source_ref("52DF825DB9CB78FF"));
  CAF_CHECK(!is_source_ref("52df825db9cb78fg"));
  CAF_CHECK(!is_source_ref("52df825db9cb78f "));
  CAF_CHECK(!is_source_ref("../../etc/passwd"));
  CAF_CHECK(!is_source_ref("52df825db9cb78ff-0123456789abcdef"));
}

CAF_TEST(every computed ref is a source ref) {
  for (auto text :
       {"{}", R"({"a":"b"})", R"({"demo_id":"X","role":"reviewer"})",
        "{\"\U0001F600\":\"\"}"}) {
    auto ref = ref_of(text);
    CAF_CHECK(is_source_ref(ref));
    CAF_CHECK_EQUAL(stream_path(ref), "/_entities/" + ref);
  }
}

CAF_TEST(source_ref pads to sixteen digits) {
  // Hash of {"a":"24"} starts with a zero digit (computed with Node).
  CAF_CHECK_EQUAL(ref_of(R"({"a":"24"})"), "055e0aae8ac2f068");
  CAF_CHECK_EQUAL(ref_of("{}"), "08f44b07b5901a25");
}

// -- errors --------------------------------------------------------------------

CAF_TEST(non objects are rejected naming their type) {
  CAF_CHECK_EQUAL(error_of("[]"),
                  "invalid_tags: tags must be a JSON object, got array");
  CAF_CHECK_EQUAL(error_of(R"([["a","b"]])"),
                  "invalid_tags: tags must be a JSON object, got array");
  CAF_CHECK_EQUAL(error_of("null"),
                  "invalid_tags: tags must be a JSON object, got null");
  CAF_CHECK_EQUAL(error_of(R"("a")"),
                  "invalid_tags: tags must be a JSON object, got string");
  CAF_CHECK_EQUAL(error_of("42"),
                  "invalid_tags: tags must be a JSON object, got number");
  CAF_CHECK_EQUAL(error_of("true"),
                  "invalid_tags: tags must be a JSON object, got boolean");
  CAF_CHECK_EQUAL(json_error_of(nlohmann::json::binary({1, 2})),
                  "invalid_tags: tags must be a JSON object, got binary");
}

CAF_TEST(non string values are rejected naming the key) {
  CAF_CHECK_EQUAL(
    error_of(R"({"role":1})"),
    R"(invalid_tags: tag "role" must have a string value, got number)");
  CAF_CHECK_EQUAL(
    error_of(R"({"ok":"x","role":1.5})"),
    R"(invalid_tags: tag "role" must have a string value, got number)");
  CAF_CHECK_EQUAL(
    error_of(R"({"role":null})"),
    R"(invalid_tags: tag "role" must have a string value, got null)");
  CAF_CHECK_EQUAL(
    error_of(R"({"role":true})"),
    R"(invalid_tags: tag "role" must have a string value, got boolean)");
  CAF_CHECK_EQUAL(
    error_of(R"({"role":{"a":"b"}})"),
    R"(invalid_tags: tag "role" must have a string value, got object)");
  CAF_CHECK_EQUAL(
    error_of(R"({"role":["a"]})"),
    R"(invalid_tags: tag "role" must have a string value, got array)");
}

CAF_TEST(bad keys are quoted as json in messages) {
  CAF_CHECK_EQUAL(
    error_of(R"({"":1})"),
    R"(invalid_tags: tag "" must have a string value, got number)");
  CAF_CHECK_EQUAL(
    error_of(R"({"a\"b\n":1})"),
    R"(invalid_tags: tag "a\"b\n" must have a string value, got number)");
}

CAF_TEST(errors carry the invalid_tags code and the message as context) {
  auto tags = parse_tags("[]");
  CAF_REQUIRE(!tags);
  CAF_CHECK_EQUAL(tags.error().category(), error_category);
  CAF_CHECK_EQUAL(tags.error().code(), static_cast<uint8_t>(ec::invalid_tags));
  CAF_REQUIRE(tags.error().context().match_elements<std::string>());
  CAF_CHECK_EQUAL(tags.error().context().get_as<std::string>(0),
                  "tags must be a JSON object, got array");
}

CAF_TEST(invalid json text is rejected with the parser reason) {
  for (auto text : {"", "{", R"({"a":"b",})", R"({"a":"b"} x)", "{'a':'b'}",
                    R"({a:"b"})", R"({"a":"b"/*c*/})", "{\"a\":\"\n\"}",
                    R"({"a":"\ud800"})", R"({"a":"\x"})"}) {
    auto err = error_of(text);
    CAF_CHECK(starts_with(err, "invalid_tags: tags are not valid JSON: "));
    CAF_CHECK(err.find("json.exception") == std::string::npos);
  }
  CAF_CHECK_EQUAL(error_of("{"),
                  "invalid_tags: tags are not valid JSON: parse error at line "
                  "1, column 2: syntax error while parsing object key - "
                  "unexpected end of input; expected string literal");
}

CAF_TEST(numbers out of double range are invalid json not a crash) {
  CAF_CHECK_EQUAL(error_of(R"({"a":1e400})"),
                  "invalid_tags: tags are not valid JSON: number overflow "
                  "parsing '1e400'");
}

CAF_TEST(parser messages quoting invalid utf8 stay printable ascii) {
  auto err = error_of("{\"a\":\"\xff\xfe\"}");
  CAF_CHECK(starts_with(err, "invalid_tags: tags are not valid JSON: "));
  CAF_CHECK(std::all_of(err.begin(), err.end(),
                        [](char c) { return c >= 0x20 && c <= 0x7E; }));
}

CAF_TEST(tags holding U+0000 are refused because Postgres cannot store them) {
  auto in_value = ebridge::parse_tags(R"({"a":"x\u0000y"})");
  CAF_REQUIRE(!in_value);
  CAF_CHECK_EQUAL(in_value.error().code(),
                  static_cast<uint8_t>(ebridge::ec::invalid_tags));
  CAF_CHECK_NOT_EQUAL(ebridge::error_message(in_value.error()).find("\"a\""),
                      std::string::npos);
  CAF_CHECK(!ebridge::parse_tags(R"({"k\u0000":"v"})"));
}

CAF_TEST(utf8 validation accepts well formed text only) {
  using ebridge::is_valid_utf8;
  CAF_CHECK(is_valid_utf8(""));
  CAF_CHECK(is_valid_utf8("plain ascii"));
  CAF_CHECK(is_valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  CAF_CHECK(is_valid_utf8("\xEF\xBF\xBD")); // U+FFFD itself
  CAF_CHECK(!is_valid_utf8("\xFF"));
  CAF_CHECK(!is_valid_utf8("\xC3"));             // truncated
  CAF_CHECK(!is_valid_utf8("\xC0\xAF"));         // overlong
  CAF_CHECK(!is_valid_utf8("\xED\xA0\x80"));     // surrogate
  CAF_CHECK(!is_valid_utf8("\xF4\x90\x80\x80")); // past U+10FFFF
}

CAF_TEST(tag limits take each bound and refuse one past it) {
  tag_limits limits{3, 4, 5};
  auto make = [](size_t pairs, size_t key_bytes, size_t value_bytes) {
    tag_set tags;
    for (size_t i = 0; i < pairs; ++i)
      tags.pairs.emplace_back(std::string(key_bytes - 1, 'k')
                                + static_cast<char>('a' + i),
                              std::string(value_bytes, 'v'));
    return tags;
  };
  CAF_CHECK(!check_tag_limits(make(3, 4, 5), limits));
  auto pairs = check_tag_limits(make(4, 4, 5), limits);
  CAF_CHECK_EQUAL(error_message(pairs), "4 tags, more than 3 (tags.max-pairs)");
  auto key = check_tag_limits(make(1, 5, 5), limits);
  CAF_CHECK(error_message(key).find("tags.max-key-bytes") != std::string::npos);
  auto value = check_tag_limits(make(1, 4, 6), limits);
  CAF_CHECK(error_message(value).find("tags.max-value-bytes")
            != std::string::npos);
  // The defaults: 64 pairs, keys of 256 bytes, values of 1,024 bytes.
  tag_limits defaults;
  CAF_CHECK(!check_tag_limits(make(64, 256, 1024), defaults));
  CAF_CHECK(check_tag_limits(make(65, 2, 1), defaults));
}
