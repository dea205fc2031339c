#define CAF_SUITE json_split
#include <caf/test/unit_test.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/json_split.hpp"
#include "tests/fuzz_util.hpp"

// The splitter that cuts a JSON body into its messages: it must accept and
// refuse exactly what a full JSON parser does (nlohmann is the reference),
// and report each element's own bytes.

using namespace ebridge;

namespace {

struct split {
  json_split_result result;
  std::vector<std::string> parts;
};

split run(std::string_view text, size_t depth = max_json_depth) {
  split out;
  out.result = split_json(
    text, [&](std::string_view part) { out.parts.emplace_back(part); }, depth);
  return out;
}

bool nlohmann_accepts(const std::string& text) {
  return !nlohmann::json::parse(text, nullptr, false).is_discarded();
}

} // namespace

CAF_TEST(an array reports each element with its own bytes) {
  auto s = run(
    R"( [ 1 , "a,b" ,{"k": [2, 3]}, [] ,{} , null,true ,-0.5e+3 ] )");
  CAF_REQUIRE(s.result.ok);
  CAF_CHECK(s.result.array);
  CAF_CHECK_EQUAL(s.result.count, 8u);
  std::vector<std::string> want{"1",    R"("a,b")", R"({"k": [2, 3]})",
                                "[]",   "{}",       "null",
                                "true", "-0.5e+3"};
  CAF_CHECK_EQUAL(s.parts, want);
}

CAF_TEST(any other value is reported whole without its whitespace) {
  for (auto [text, want] : std::vector<std::pair<std::string, std::string>>{
         {" {\"a\": [1]} \n", "{\"a\": [1]}"},
         {"\"x\"", "\"x\""},
         {"\t42\r\n", "42"},
         {"\xEF\xBB\xBF{}", "{}"}}) {
    auto s = run(text);
    CAF_REQUIRE(s.result.ok);
    CAF_CHECK(!s.result.array);
    CAF_REQUIRE_EQUAL(s.parts.size(), 1u);
    CAF_CHECK_EQUAL(s.parts[0], want);
  }
}

CAF_TEST(an empty array reports nothing) {
  auto s = run(" [ ] ");
  CAF_CHECK(s.result.ok);
  CAF_CHECK(s.result.array);
  CAF_CHECK_EQUAL(s.result.count, 0u);
}

CAF_TEST(invalid JSON is refused with the byte where it went wrong) {
  for (const std::string& text :
       std::vector<std::string>{"",
                                " ",
                                "[1,]",
                                "[1 2]",
                                "{\"a\" 1}",
                                "{\"a\":1,}",
                                "{1:2}",
                                "[01]",
                                "[1.]",
                                "[.5]",
                                "[1e]",
                                "[-]",
                                "[+1]",
                                "[1e999]",
                                "[-1e400]",
                                "[tru]",
                                "[nul]",
                                "[True]",
                                "[\"a]",
                                "[\"\\x\"]",
                                "[\"\\u12G4\"]",
                                "[\"\\ud800\"]",
                                "[\"\\udc00\"]",
                                "[\"\\ud800\\u0041\"]",
                                "[\"a\x01\"]",
                                "[\"\xff\"]",
                                "[\"\xc0\x80\"]",
                                "[\"\xed\xa0\x80\"]",
                                "[\"\xf4\x90\x80\x80\"]",
                                "[\"\xe2\x82\"]",
                                "[1] [2]",
                                "[1]]",
                                "[[1]",
                                "{\"a\":1}}",
                                "'a'",
                                "[NaN]",
                                "[0x1]"}) {
    auto s = run(text);
    CAF_CHECK(!s.result.ok);
    CAF_CHECK(s.result.error.rfind("invalid JSON at byte ", 0) == 0);
    CAF_CHECK(!nlohmann_accepts(text));
  }
  auto s = run("[1, 2, x]");
  CAF_CHECK_EQUAL(s.result.error, "invalid JSON at byte 7: unexpected "
                                  "character");
}

CAF_TEST(valid edge cases are accepted as nlohmann accepts them) {
  for (const std::string& text : std::vector<std::string>{
         "0", "-0", "1E+2", "1e-400", "123456789012345678901234567890",
         "\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"", "\"\\/\\b\\f\\n\\r\\t\"",
         "\"\xed\x9f\xbf\"", "\"\xee\x80\x80\"", "\"\xf4\x8f\xbf\xbf\"",
         "{\"\":{\"\":[]}}", "[[[[[]]]]]"}) {
    CAF_CHECK(run(text).result.ok);
    CAF_CHECK(nlohmann_accepts(text));
  }
}

CAF_TEST(nesting deeper than the limit is refused without recursion) {
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  auto s = run(deep);
  CAF_CHECK(!s.result.ok);
  CAF_CHECK(s.result.too_deep);
  CAF_CHECK(s.result.error.find("nest deeper than 256") != std::string::npos);
  std::string ok(256, '[');
  ok += std::string(256, ']');
  CAF_CHECK(run(ok).result.ok);
  ok = "[" + ok + "]";
  CAF_CHECK(!run(ok).result.ok);
}

CAF_TEST(mutated JSON gets the same verdict as nlohmann) {
  // Differential: every mutation of valid documents is accepted by the
  // splitter exactly when nlohmann accepts it, and an accepted array's
  // elements are the elements nlohmann sees.
  std::vector<std::string> seeds{
    R"([{"a":1,"b":[true,false,null]},"x\"y",-1.5e-3,[],{}])",
    R"({"tags":{"k":"v"},"n":[1,2,3],"s":"\u00e9\ud83d\ude00"})",
    "[\"caf\xc3\xa9\", \"\xe2\x82\xac\", 0, 1e10, \"\\\\\"]",
    R"([[1,[2,[3]]],{"":{"":""}}])",
    "\"plain\"",
    "12.5"};
  test::mutator m;
  size_t accepted = 0;
  size_t total = test::rounds(20000);
  for (size_t i = 0; i < total; ++i) {
    auto text = m.mutate(seeds[m.below(seeds.size())]);
    auto s = run(text);
    auto doc = nlohmann::json::parse(text, nullptr, false);
    // nlohmann reads a NUL byte as the end of its input; JSON has no place
    // for one, and the splitter refuses it.
    bool ref = !doc.is_discarded() && text.find('\0') == std::string::npos;
    if (s.result.ok != ref) {
      CAF_FAIL("verdicts differ (splitter " << s.result.ok << ", nlohmann "
                                            << ref << ") on " << text << " : "
                                            << s.result.error);
    }
    if (!ref)
      continue;
    ++accepted;
    if (doc.is_array()) {
      CAF_REQUIRE_EQUAL(s.parts.size(), doc.size());
      for (size_t k = 0; k < doc.size(); ++k)
        CAF_REQUIRE_EQUAL(nlohmann::json::parse(s.parts[k]), doc[k]);
    } else {
      CAF_REQUIRE_EQUAL(s.parts.size(), 1u);
      CAF_REQUIRE_EQUAL(nlohmann::json::parse(s.parts[0]), doc);
    }
  }
  CAF_MESSAGE(accepted << " of " << total << " mutations were valid JSON");
  CAF_CHECK(accepted > total / 50);
}
