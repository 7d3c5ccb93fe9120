// Internal helpers shared by the point-cloud readers: whole-file loading,
// error messages, scalar types with endian-aware loads, text tokens and
// std::from_chars number parsing. Every reader loads the file once and then
// only touches bytes it has bounds-checked against the loaded size.
#pragma once

#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "lattice/core/error.hpp"

namespace lattice::io::detail {

// Names the reader and the file in every error: "[read_pcd] file 'PATH': what".
class ReadContext {
 public:
  ReadContext(std::string_view reader, const std::filesystem::path& path) : reader_(reader), path_(path) {}

  template <class... Args>
  [[noreturn]] void fail(const Args&... args) const {
    throw IoError(lattice::detail::concat("[", reader_, "] file '", path_.string(), "': ", args...));
  }

  const std::filesystem::path& path() const { return path_; }

 private:
  std::string_view reader_;
  const std::filesystem::path& path_;
};

// The whole file in one read; throws IoError if it is missing or unreadable.
inline std::string load_file(const ReadContext& ctx) {
  std::error_code ec;
  const auto status = std::filesystem::status(ctx.path(), ec);
  if (status.type() == std::filesystem::file_type::not_found) ctx.fail("does not exist");
  if (ec) ctx.fail("cannot be accessed (", ec.message(), ")");
  if (std::filesystem::is_directory(status)) ctx.fail("is a directory, not a file");
  errno = 0;
  std::ifstream in(ctx.path(), std::ios::binary);
  if (!in) ctx.fail("cannot be opened for reading (", errno != 0 ? std::strerror(errno) : "unknown reason", ")");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) ctx.fail("cannot determine its size");
  in.seekg(0, std::ios::beg);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), size);
  if (in.gcount() != size) ctx.fail("read ", in.gcount(), " of ", size, " bytes (I/O error or file changed)");
  return bytes;
}

// A file token for an error message: quoted, at most 40 characters,
// non-printable bytes as \xNN (a corrupt file may put anything there).
inline std::string quoted(std::string_view token) {
  constexpr std::size_t k_max_chars = 40;
  std::string out = "'";
  for (std::size_t i = 0; i < token.size() && i < k_max_chars; ++i) {
    const auto c = static_cast<unsigned char>(token[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else {
      constexpr char k_hex[] = "0123456789abcdef";
      out += "\\x";
      out += k_hex[c >> 4];
      out += k_hex[c & 0xF];
    }
  }
  if (token.size() > k_max_chars) out += "...";
  return out + "'";
}

// ---- scalar types -----------------------------------------------------------

enum class Scalar : std::uint8_t { i8, u8, i16, u16, i32, u32, i64, u64, f32, f64 };

constexpr int scalar_size(Scalar t) {
  switch (t) {
    case Scalar::i8:
    case Scalar::u8:
      return 1;
    case Scalar::i16:
    case Scalar::u16:
      return 2;
    case Scalar::i32:
    case Scalar::u32:
    case Scalar::f32:
      return 4;
    case Scalar::i64:
    case Scalar::u64:
    case Scalar::f64:
      return 8;
  }
  return 0;
}

constexpr bool scalar_is_float(Scalar t) { return t == Scalar::f32 || t == Scalar::f64; }
constexpr bool scalar_is_signed(Scalar t) {
  return t == Scalar::i8 || t == Scalar::i16 || t == Scalar::i32 || t == Scalar::i64;
}

// True when data stored with the given byte order must be swapped on this host.
constexpr bool needs_swap(bool big_endian) { return big_endian != (std::endian::native == std::endian::big); }

template <class U>
constexpr U byte_swap(U v) {
  static_assert(std::is_unsigned_v<U>);
  U out = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    out = static_cast<U>((out << 8) | (v & 0xFF));
    v = static_cast<U>(v >> 8);
  }
  return out;
}

// Loads an unsigned integer of sizeof(U) bytes from an unaligned address.
template <class U>
U load_unsigned(const unsigned char* p, bool swap) {
  U v;
  std::memcpy(&v, p, sizeof(U));
  return swap ? byte_swap(v) : v;
}

// The raw bits of one scalar of `size` bytes (1, 2, 4 or 8), zero-extended.
inline std::uint64_t load_bits(const unsigned char* p, int size, bool swap) {
  switch (size) {
    case 1:
      return *p;
    case 2:
      return load_unsigned<std::uint16_t>(p, swap);
    case 4:
      return load_unsigned<std::uint32_t>(p, swap);
    default:
      return load_unsigned<std::uint64_t>(p, swap);
  }
}

// One scalar as double (exact for every type but 64-bit integers).
inline double load_as_double(const unsigned char* p, Scalar t, bool swap) {
  const std::uint64_t b = load_bits(p, scalar_size(t), swap);
  switch (t) {
    case Scalar::i8:
      return static_cast<std::int8_t>(b);
    case Scalar::u8:
      return static_cast<std::uint8_t>(b);
    case Scalar::i16:
      return static_cast<std::int16_t>(b);
    case Scalar::u16:
      return static_cast<std::uint16_t>(b);
    case Scalar::i32:
      return static_cast<std::int32_t>(b);
    case Scalar::u32:
      return static_cast<std::uint32_t>(b);
    case Scalar::i64:
      return static_cast<double>(static_cast<std::int64_t>(b));
    case Scalar::u64:
      return static_cast<double>(b);
    case Scalar::f32:
      return std::bit_cast<float>(static_cast<std::uint32_t>(b));
    case Scalar::f64:
      return std::bit_cast<double>(b);
  }
  return 0.0;
}

// One scalar as float32; float32 sources are copied bit-exactly (NaN payloads kept).
inline float load_as_float(const unsigned char* p, Scalar t, bool swap) {
  if (t == Scalar::f32) return std::bit_cast<float>(load_unsigned<std::uint32_t>(p, swap));
  return static_cast<float>(load_as_double(p, t, swap));
}

// One integer scalar, sign-extended for signed types (`t` must be an integer type).
inline std::int64_t load_as_int(const unsigned char* p, Scalar t, bool swap) {
  const std::uint64_t b = load_bits(p, scalar_size(t), swap);
  switch (t) {
    case Scalar::i8:
      return static_cast<std::int8_t>(b);
    case Scalar::i16:
      return static_cast<std::int16_t>(b);
    case Scalar::i32:
      return static_cast<std::int32_t>(b);
    default:
      return static_cast<std::int64_t>(b);  // unsigned types and i64
  }
}

// ---- saturating size arithmetic (header counts are untrusted) --------------

constexpr std::uint64_t sat_mul(std::uint64_t a, std::uint64_t b) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::numeric_limits<std::uint64_t>::max();
  return a * b;
}
constexpr std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) {
  return b > std::numeric_limits<std::uint64_t>::max() - a ? std::numeric_limits<std::uint64_t>::max() : a + b;
}

// ---- text -------------------------------------------------------------------

constexpr bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

// The next line of `data` from `pos` (without "\n" or "\r\n"); advances `pos`
// past the newline. nullopt at the end of the data.
inline std::optional<std::string_view> next_line(std::string_view data, std::size_t& pos) {
  if (pos >= data.size()) return std::nullopt;
  const std::size_t nl = data.find('\n', pos);
  const std::size_t end = nl == std::string_view::npos ? data.size() : nl;
  std::string_view line = data.substr(pos, end - pos);
  pos = nl == std::string_view::npos ? data.size() : nl + 1;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Pops the next whitespace-separated token from `text` (empty at the end).
inline std::string_view next_token(std::string_view& text) {
  std::size_t i = 0;
  while (i < text.size() && is_space(text[i])) ++i;
  std::size_t j = i;
  while (j < text.size() && !is_space(text[j])) ++j;
  std::string_view token = text.substr(i, j - i);
  text.remove_prefix(j);
  return token;
}

// The whitespace-separated tokens of a line.
inline std::vector<std::string_view> split_tokens(std::string_view line) {
  std::vector<std::string_view> tokens;
  for (std::string_view t = next_token(line); !t.empty(); t = next_token(line)) tokens.push_back(t);
  return tokens;
}

inline std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Parses the whole token as T (integer or floating point) with std::from_chars;
// false on trailing characters, overflow or an empty token. A leading '+' is
// accepted (from_chars rejects it but writers emit it).
template <class T>
bool parse_number(std::string_view token, T& out) {
  if (!token.empty() && token.front() == '+') {
    token.remove_prefix(1);
    if (!token.empty() && token.front() == '-') return false;
  }
  if (token.empty()) return false;
  const char* end = token.data() + token.size();
  auto [ptr, ec] = std::from_chars(token.data(), end, out);
  return ec == std::errc() && ptr == end;
}

// Parses an integer token that must fit the integer type `t`.
inline bool parse_scalar_as_int(std::string_view token, Scalar t, std::int64_t& out) {
  if (t == Scalar::u64) {
    std::uint64_t u = 0;
    if (!parse_number(token, u)) return false;
    // Beyond int64 is kept as its two's-complement bits; callers only use
    // 64-bit values as floats or range-check them.
    out = static_cast<std::int64_t>(u);
    return true;
  }
  if (!parse_number(token, out)) return false;
  switch (t) {
    case Scalar::i8:
      return out >= INT8_MIN && out <= INT8_MAX;
    case Scalar::u8:
      return out >= 0 && out <= UINT8_MAX;
    case Scalar::i16:
      return out >= INT16_MIN && out <= INT16_MAX;
    case Scalar::u16:
      return out >= 0 && out <= UINT16_MAX;
    case Scalar::i32:
      return out >= INT32_MIN && out <= INT32_MAX;
    case Scalar::u32:
      return out >= 0 && out <= UINT32_MAX;
    case Scalar::i64:
      return true;
    default:
      return false;  // float types are not integers
  }
}

// Parses `token` as a value of scalar type `t` and returns it as float32.
// Integer tokens must fit the type; float tokens are rounded once (float32
// types parse straight to float; "nan" and "inf" are accepted). False if the
// token is not such a number.
inline bool parse_scalar_as_float(std::string_view token, Scalar t, float& out) {
  if (t == Scalar::f32) {
    if (parse_number(token, out)) return true;
    // from_chars rejects values beyond float's range; like strtof, take the
    // nearest float (0 or +-inf) of any valid double instead.
    double d = 0.0;
    if (!parse_number(token, d)) return false;
    out = static_cast<float>(d);
    return true;
  }
  if (t == Scalar::f64) {
    double d = 0.0;
    if (!parse_number(token, d)) return false;
    out = static_cast<float>(d);
    return true;
  }
  if (t == Scalar::u64) {
    std::uint64_t u = 0;
    if (!parse_number(token, u)) return false;
    out = static_cast<float>(u);
    return true;
  }
  std::int64_t v = 0;
  if (!parse_scalar_as_int(token, t, v)) return false;
  out = static_cast<float>(v);
  return true;
}

}  // namespace lattice::io::detail
