// safetensors reader and writer (format in lattice/io/safetensors.hpp).
//
// The header is parsed by a small strict JSON parser into a tree, then
// checked against the format's rules before any tensor is built. Every size
// computation is overflow-checked: a hostile header can only produce IoError.
#include "lattice/io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

namespace lattice::io {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

constexpr std::uint64_t k_max_header = 100u * 1000u * 1000u;  // the reference implementation's limit
constexpr int k_max_depth = 64;

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw IoError(detail::concat("[load_safetensors] file '", source, "': ", what));
}

// ---- strict JSON ---------------------------------------------------------------------

struct Json {
  enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
  bool boolean = false;
  std::string text;  // string value, or the number's literal
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;  // in file order
};

class JsonParser {
 public:
  JsonParser(std::string_view s, const std::string& source) : s_(s), source_(source) {}

  Json document() {
    skip_ws();
    Json v = value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected bytes after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    bad(source_, detail::concat("malformed header JSON at byte ", pos_, ": ", what));
  }
  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }
  void skip_ws() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    if (at_end() || s_[pos_] != c) fail(detail::concat("expected '", c, "'"));
    ++pos_;
  }
  void literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail("invalid literal");
    pos_ += word.size();
  }

  Json value(int depth) {
    if (depth > k_max_depth) fail("nesting deeper than 64");
    Json v;
    switch (peek()) {
      case '{':
        v.kind = Json::Kind::object;
        object(v, depth);
        break;
      case '[':
        v.kind = Json::Kind::array;
        array(v, depth);
        break;
      case '"':
        v.kind = Json::Kind::string;
        v.text = string();
        break;
      case 't':
        literal("true");
        v.kind = Json::Kind::boolean;
        v.boolean = true;
        break;
      case 'f':
        literal("false");
        v.kind = Json::Kind::boolean;
        break;
      case 'n':
        literal("null");
        break;
      default:
        v.kind = Json::Kind::number;
        v.text = number();
        break;
    }
    return v;
  }

  void object(Json& v, int depth) {
    expect('{');
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a string key");
      std::string key = string();
      skip_ws();
      expect(':');
      skip_ws();
      v.members.emplace_back(std::move(key), value(depth + 1));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return;
    }
  }

  void array(Json& v, int depth) {
    expect('[');
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      v.items.push_back(value(depth + 1));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return;
    }
  }

  std::string number() {
    const std::size_t begin = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      fail("expected a value");
    }
    if (peek() == '.') {
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected digits after '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected exponent digits");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    return std::string(s_.substr(begin, pos_ - begin));
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        fail("bad hex digit in \\u escape");
      }
    }
    return v;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (at_end()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_end()) fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xd800 && cp < 0xdc00) {  // high surrogate: a low one must follow
            if (s_.substr(pos_, 2) != "\\u") fail("unpaired surrogate");
            pos_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xdc00 || lo >= 0xe000) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            fail("unpaired surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default:
          fail("unknown escape");
      }
    }
  }

  std::string_view s_;
  const std::string& source_;
  std::size_t pos_ = 0;
};

// Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as
// the reference implementation requires of the header.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = 0;
    unsigned cp = 0, min = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 1, cp = c & 0x1fu, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 2, cp = c & 0x0fu, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 3, cp = c & 0x07u, min = 0x10000;
    } else {
      return false;
    }
    if (i + static_cast<std::size_t>(len) >= s.size()) return false;  // truncated sequence
    for (int k = 1; k <= len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return false;
    i += static_cast<std::size_t>(len) + 1;
  }
  return true;
}

void write_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      static const char* hex = "0123456789abcdef";
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
}

// ---- dtypes --------------------------------------------------------------------------

std::string_view dtype_code(DType t) {
  switch (t) {
    case DType::f16:
      return "F16";
    case DType::bf16:
      return "BF16";
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::u8:
      return "U8";
    case DType::u32:
      return "U32";
  }
  return "?";
}

bool parse_dtype(std::string_view code, DType& out) {
  for (DType t : {DType::f16, DType::bf16, DType::f32, DType::f64, DType::i32, DType::i64, DType::u8, DType::u32}) {
    if (dtype_code(t) == code) {
      out = t;
      return true;
    }
  }
  return false;
}

// A non-negative JSON integer that fits in uint64.
bool to_u64(const Json& v, std::uint64_t& out) {
  if (v.kind != Json::Kind::number || v.text.empty() || v.text.size() > 20) return false;
  std::uint64_t x = 0;
  for (const char c : v.text) {
    if (c < '0' || c > '9') return false;  // negative, fraction or exponent
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (x > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    x = x * 10 + d;
  }
  out = x;
  return true;
}

struct Entry {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin, end;
};

Entry parse_entry(const std::string& name, const Json& v, const std::string& src) {
  const std::string where = detail::concat("tensor '", name, "'");
  if (v.kind != Json::Kind::object) bad(src, where + " is not a JSON object");
  const Json* dtype = nullptr;
  const Json* shape = nullptr;
  const Json* offsets = nullptr;
  for (const auto& [k, m] : v.members) {
    const Json** slot = k == "dtype" ? &dtype : k == "shape" ? &shape : k == "data_offsets" ? &offsets : nullptr;
    if (slot == nullptr) bad(src, detail::concat(where, " has an unknown field '", k, "'"));
    if (*slot != nullptr) bad(src, detail::concat(where, " repeats the field '", k, "'"));
    *slot = &m;
  }
  if (dtype == nullptr || shape == nullptr || offsets == nullptr) {
    bad(src, where + " needs dtype, shape and data_offsets");
  }
  Entry e{name, DType::f32, {}, 0, 0};
  if (dtype->kind != Json::Kind::string || !parse_dtype(dtype->text, e.dtype)) {
    bad(src, detail::concat(where, " has an unsupported dtype ",
                            dtype->kind == Json::Kind::string ? "'" + dtype->text + "'" : std::string("(not a string)"),
                            " (lattice reads F16, BF16, F32, F64, I32, I64, U8, U32)"));
  }
  if (shape->kind != Json::Kind::array) bad(src, where + " has a shape that is not an array");
  if (shape->items.size() > static_cast<std::size_t>(Shape::k_max_dims)) {
    bad(src, detail::concat(where, " has ", shape->items.size(), " dimensions; lattice arrays have at most ",
                            Shape::k_max_dims));
  }
  std::uint64_t numel = 1;
  bool zero = false;
  for (const Json& d : shape->items) {
    std::uint64_t x = 0;
    if (!to_u64(d, x) || x > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      bad(src, where + " has a shape entry that is not a non-negative integer");
    }
    e.shape.push_back(static_cast<std::int64_t>(x));
    if (x == 0) zero = true;
    if (!zero && x != 0 && numel > (std::uint64_t{1} << 60) / x) bad(src, where + " has a shape too large");
    if (!zero) numel *= x;
  }
  if (zero) numel = 0;
  if (offsets->kind != Json::Kind::array || offsets->items.size() != 2 || !to_u64(offsets->items[0], e.begin) ||
      !to_u64(offsets->items[1], e.end)) {
    bad(src, where + " needs data_offsets [begin, end] of non-negative integers");
  }
  if (e.end < e.begin)
    bad(src, detail::concat(where, " has data_offsets [", e.begin, ", ", e.end, "] with end < begin"));
  if (e.end - e.begin != numel * itemsize(e.dtype)) {
    bad(src, detail::concat(where, " holds ", e.end - e.begin, " bytes but shape and dtype need ",
                            numel * itemsize(e.dtype)));
  }
  return e;
}

}  // namespace

std::string serialize_safetensors(const TensorDict& tensors, const Metadata& metadata) {
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first) header += ',';
      first = false;
      write_json_string(header, k);
      header += ':';
      write_json_string(header, v);
    }
    header += '}';
    first = false;
  }
  std::uint64_t offset = 0;
  std::set<std::string_view> seen;
  for (const auto& [name, a] : tensors) {
    check(seen.insert(name).second, "save_safetensors", "tensors", "the name '", name, "' appears twice");
    check(!name.empty() && name != "__metadata__", "save_safetensors", "tensors",
          "tensor names must be non-empty and not '__metadata__' (got '", name, "')");
    check(a.defined(), "save_safetensors", "tensors", "tensor '", name, "' is an undefined array");
    if (!first) header += ',';
    first = false;
    write_json_string(header, name);
    header += detail::concat(":{\"dtype\":\"", dtype_code(a.dtype()), "\",\"shape\":[");
    for (int d = 0; d < a.ndim(); ++d) header += detail::concat(d ? "," : "", a.dim(d));
    header += detail::concat("],\"data_offsets\":[", offset, ",", offset + a.nbytes(), "]}");
    offset += a.nbytes();
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out += header;
  const std::size_t data_begin = out.size();
  out.resize(data_begin + offset);
  std::size_t at = data_begin;
  for (const auto& [name, a] : tensors) {
    if (a.nbytes() > 0) copy_bytes(out.data() + at, Device::cpu(), a.raw(), a.device(), a.nbytes());
    at += a.nbytes();
  }
  return out;
}

void save_safetensors(const std::string& path, const TensorDict& tensors, const Metadata& metadata) {
  const std::string bytes = serialize_safetensors(tensors, metadata);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw IoError(detail::concat("[save_safetensors] cannot open '", path, "' for writing"));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) throw IoError(detail::concat("[save_safetensors] writing '", path, "' failed"));
}

TensorDict deserialize_safetensors(const std::string& bytes, Device device, Metadata* metadata,
                                   const std::string& source) {
  if (bytes.size() < 8) bad(source, detail::concat("is ", bytes.size(), " bytes; the 8-byte header length is missing"));
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > k_max_header) bad(source, detail::concat("header length ", n, " exceeds the 100 MB limit"));
  if (n > bytes.size() - 8) {
    bad(source, detail::concat("header length ", n, " runs past the end of the file (", bytes.size(), " bytes)"));
  }
  if (n < 2 || bytes[8] != '{') bad(source, "header does not start with '{'");
  if (!valid_utf8(std::string_view(bytes).substr(8, n))) bad(source, "header is not valid UTF-8");
  const Json root = JsonParser(std::string_view(bytes).substr(8, n), source).document();
  if (root.kind != Json::Kind::object) bad(source, "header is not a JSON object");
  const std::uint64_t data_size = bytes.size() - 8 - n;

  Metadata meta;
  std::vector<Entry> entries;
  std::set<std::string> names;
  bool seen_meta = false;
  for (const auto& [key, v] : root.members) {
    if (!names.insert(key).second) bad(source, detail::concat("header repeats the key '", key, "'"));
    if (key == "__metadata__") {
      seen_meta = true;
      if (v.kind != Json::Kind::object) bad(source, "__metadata__ is not a JSON object");
      for (const auto& [mk, mv] : v.members) {
        if (mv.kind != Json::Kind::string)
          bad(source, detail::concat("__metadata__ value of '", mk, "' is not a string"));
        if (!meta.emplace(mk, mv.text).second) bad(source, detail::concat("__metadata__ repeats the key '", mk, "'"));
      }
      continue;
    }
    if (key.empty()) bad(source, "a tensor has an empty name");
    entries.push_back(parse_entry(key, v, source));
  }
  (void)seen_meta;

  // Offsets must tile [0, data_size) exactly: sort by (begin, end) and walk.
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t at = 0;
  for (const Entry* e : order) {
    if (e->begin != at) {
      bad(source, detail::concat("tensor '", e->name, "' starts at data offset ", e->begin,
                                 " but the previous data ends at ", at, " (offsets overlap or leave a gap)"));
    }
    at = e->end;
    if (at > data_size) {
      bad(source, detail::concat("tensor '", e->name, "' ends at data offset ", at, " past the data section (",
                                 data_size, " bytes; file truncated?)"));
    }
  }
  if (at != data_size) {
    bad(source, detail::concat("the data section has ", data_size, " bytes but the tensors cover ", at));
  }

  TensorDict out;
  const char* data = bytes.data() + 8 + n;
  for (const Entry* ep : order) {
    const Entry& e = *ep;
    Array host = Array::empty(Shape(std::span<const std::int64_t>(e.shape)), e.dtype, Device::cpu());
    if (e.end > e.begin) std::memcpy(host.raw(), data + e.begin, e.end - e.begin);
    out.emplace_back(e.name, host.to(device));
  }
  if (metadata != nullptr) *metadata = std::move(meta);
  return out;
}

TensorDict load_safetensors(const std::string& path, Device device, Metadata* metadata) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError(detail::concat("[load_safetensors] cannot open '", path, "'"));
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  f.seekg(0, std::ios::beg);
  if (size < 0) throw IoError(detail::concat("[load_safetensors] cannot determine the size of '", path, "'"));
  std::string bytes(static_cast<std::size_t>(size), '\0');
  if (size > 0 && !f.read(bytes.data(), size)) {
    throw IoError(detail::concat("[load_safetensors] reading '", path, "' failed"));
  }
  return deserialize_safetensors(bytes, device, metadata, path);
}

}  // namespace lattice::io
