#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace ebridge {

/// Messages packed as the log stores them: `u32 length (little endian) |
/// bytes` each, back to back. Walks them without copying.
class packed_messages {
public:
  class iterator {
  public:
    using iterator_category = std::input_iterator_tag;
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;
    using pointer = const std::string_view*;
    using reference = std::string_view;

    iterator() = default;

    iterator(std::string_view bytes, uint32_t left)
      : bytes_(bytes), left_(left) {
      load();
    }

    std::string_view operator*() const {
      return current_;
    }

    iterator& operator++() {
      --left_;
      load();
      return *this;
    }

    bool operator==(const iterator& other) const {
      return left_ == other.left_;
    }

    bool operator!=(const iterator& other) const {
      return left_ != other.left_;
    }

  private:
    void load() {
      if (left_ == 0)
        return;
      uint32_t len = 0;
      for (int b = 0; b < 4; ++b)
        len |= static_cast<uint32_t>(static_cast<uint8_t>(bytes_[b]))
               << (8 * b);
      current_ = bytes_.substr(4, len);
      bytes_.remove_prefix(4 + len);
    }

    std::string_view bytes_;
    std::string_view current_;
    uint32_t left_ = 0;
  };

  packed_messages() = default;

  /// `bytes` must hold `count` well-formed messages (the decoder checked).
  packed_messages(std::string_view bytes, uint32_t count)
    : bytes_(bytes), count_(count) {
    // nop
  }

  /// The packed bytes, length prefixes included.
  std::string_view bytes() const noexcept {
    return bytes_;
  }

  size_t size() const noexcept {
    return count_;
  }

  bool empty() const noexcept {
    return count_ == 0;
  }

  iterator begin() const {
    return iterator{bytes_, count_};
  }

  iterator end() const {
    return iterator{};
  }

  /// The messages as separate strings (tests and small in-process users).
  std::vector<std::string> to_vector() const {
    std::vector<std::string> out;
    out.reserve(count_);
    for (auto msg : *this)
      out.emplace_back(msg);
    return out;
  }

  /// Checks that `bytes` holds exactly `count` messages; the decoders call
  /// it before they build a view.
  static bool well_formed(std::string_view bytes, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) {
      if (bytes.size() < 4)
        return false;
      uint32_t len = 0;
      for (int b = 0; b < 4; ++b)
        len |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[b])) << (8 * b);
      if (bytes.size() - 4 < len)
        return false;
      bytes.remove_prefix(4 + len);
    }
    return bytes.empty();
  }

private:
  std::string_view bytes_;
  uint32_t count_ = 0;
};

/// The messages of one append, owned and packed in one buffer: a request of
/// millions of tiny messages costs its bytes plus four per message, not a
/// string object per message.
class message_batch {
public:
  message_batch() = default;

  message_batch(std::initializer_list<std::string_view> messages) {
    for (auto msg : messages)
      add(msg);
  }

  explicit message_batch(const std::vector<std::string>& messages) {
    for (auto& msg : messages)
      add(msg);
  }

  void reserve(size_t bytes) {
    packed_.reserve(bytes);
  }

  void add(std::string_view msg) {
    auto len = static_cast<uint32_t>(msg.size());
    for (int b = 0; b < 4; ++b)
      packed_ += static_cast<char>((len >> (8 * b)) & 0xff);
    packed_.append(msg.data(), msg.size());
    ++count_;
  }

  size_t size() const noexcept {
    return count_;
  }

  bool empty() const noexcept {
    return count_ == 0;
  }

  packed_messages view() const noexcept {
    return packed_messages{packed_, count_};
  }

  packed_messages::iterator begin() const {
    return view().begin();
  }

  packed_messages::iterator end() const {
    return view().end();
  }

  std::vector<std::string> to_vector() const {
    return view().to_vector();
  }

private:
  std::string packed_;
  uint32_t count_ = 0;
};

} // namespace ebridge
