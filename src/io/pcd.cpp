// PCD reader (Point Cloud Library format, v0.5-v0.7).
//
// Layout of the file: text header lines (VERSION, FIELDS, SIZE, TYPE, COUNT,
// WIDTH, HEIGHT, VIEWPOINT, POINTS, DATA; '#' starts a comment), then the
// payload right after the DATA line:
//   ascii              one point per line, COUNT values per field
//   binary             POINTS packed little-endian structs of point_size bytes
//   binary_compressed  uint32 compressed size, uint32 uncompressed size, LZF
//                      data whose plain form is structure-of-arrays: every
//                      point's field 0 (all its COUNT values), then field 1, ...
// The header is validated completely and every claimed size is checked against
// the bytes actually present before anything is allocated.
#include <bit>
#include <cerrno>
#include <cstring>
#include <span>

#if __has_include(<lzf.h>)
#include <lzf.h>
#else
#include <liblzf/lzf.h>  // Debian installs the header in a subfolder
#endif

#include "io/reader_util.hpp"
#include "lattice/io/point_cloud.hpp"

namespace lattice::io {

namespace {

using detail::ReadContext;
using detail::Scalar;

// Binary PCD data is little endian in practice (PCL writes host order).
constexpr bool k_swap = detail::needs_swap(/*big_endian=*/false);
// Bounds the per-point bookkeeping a header can make us allocate; real
// descriptors stay far below (SHOT-1344 has 1,344 values).
constexpr std::uint64_t k_max_values_per_point = 65536;
// One LZF back-reference (3 bytes) expands to at most 264 bytes, so no valid
// stream is larger than 88x its compressed size when decompressed.
constexpr std::uint64_t k_lzf_max_ratio = 88;

enum class DataKind { ascii, binary, binary_compressed };

struct PcdField {
  std::string name;
  Scalar type = Scalar::f32;
  int size = 4;                   // bytes per value
  std::uint64_t count = 1;        // values per point
  std::uint64_t offset = 0;       // byte offset inside a packed point
  std::uint64_t first_value = 0;  // index of its first value in an ascii line
};

struct PcdHeader {
  std::vector<PcdField> fields;
  std::uint64_t points = 0;
  std::uint64_t point_size = 0;        // bytes per packed point
  std::uint64_t values_per_point = 0;  // ascii tokens per line
  DataKind data = DataKind::ascii;
  std::size_t data_offset = 0;  // first payload byte in the file
};

Scalar scalar_from_pcd(char type, int size) {
  switch (type) {
    case 'I':
      return size == 1 ? Scalar::i8 : size == 2 ? Scalar::i16 : size == 4 ? Scalar::i32 : Scalar::i64;
    case 'U':
      return size == 1 ? Scalar::u8 : size == 2 ? Scalar::u16 : size == 4 ? Scalar::u32 : Scalar::u64;
    default:
      return size == 4 ? Scalar::f32 : Scalar::f64;
  }
}

std::uint64_t parse_header_uint(const ReadContext& ctx, std::string_view key,
                                std::span<const std::string_view> values) {
  std::uint64_t v = 0;
  if (values.size() != 1 || !detail::parse_number(values[0], v)) {
    ctx.fail("header line ", key, " must have one non-negative integer (got ",
             values.empty() ? std::string("nothing") : detail::quoted(values[0]), ")");
  }
  return v;
}

PcdHeader parse_header(std::string_view file, const ReadContext& ctx) {
  std::optional<std::vector<std::string_view>> names, sizes, types, counts;
  std::optional<std::uint64_t> width, height, points;
  bool has_version = false, has_viewpoint = false, has_data = false;
  PcdHeader header;

  std::size_t pos = 0;
  std::uint64_t line_no = 0;
  while (auto line = detail::next_line(file, pos)) {
    ++line_no;
    const std::vector<std::string_view> tokens = detail::split_tokens(*line);
    if (tokens.empty() || tokens[0].front() == '#') continue;
    const std::string_view key = tokens[0];
    const std::span<const std::string_view> values = std::span(tokens).subspan(1);
    auto once = [&](bool& seen) {
      if (seen) ctx.fail("header line ", line_no, ": duplicate ", key, " line");
      seen = true;
    };
    auto list = [&](std::optional<std::vector<std::string_view>>& dst) {
      if (dst) ctx.fail("header line ", line_no, ": duplicate ", key, " line");
      if (values.empty()) ctx.fail("header line ", line_no, ": ", key, " has no entries");
      dst.emplace(values.begin(), values.end());
    };
    auto uint_value = [&](std::optional<std::uint64_t>& dst) {
      if (dst) ctx.fail("header line ", line_no, ": duplicate ", key, " line");
      dst = parse_header_uint(ctx, key, values);
    };
    if (key == "VERSION") {
      once(has_version);
      if (values.size() != 1) ctx.fail("header line ", line_no, ": VERSION must have one value");
    } else if (key == "FIELDS" || key == "COLUMNS") {  // COLUMNS: v0.5
      list(names);
    } else if (key == "SIZE") {
      list(sizes);
    } else if (key == "TYPE") {
      list(types);
    } else if (key == "COUNT") {
      list(counts);
    } else if (key == "WIDTH") {
      uint_value(width);
    } else if (key == "HEIGHT") {
      uint_value(height);
    } else if (key == "POINTS") {
      uint_value(points);
    } else if (key == "VIEWPOINT") {
      once(has_viewpoint);
      double v = 0.0;
      bool ok = values.size() == 7;
      for (std::size_t i = 0; ok && i < values.size(); ++i) ok = detail::parse_number(values[i], v);
      if (!ok) ctx.fail("header line ", line_no, ": VIEWPOINT must have 7 numbers (tx ty tz qw qx qy qz)");
    } else if (key == "DATA") {
      const std::string kind = values.size() == 1 ? detail::to_lower(values[0]) : std::string();
      if (kind == "ascii") {
        header.data = DataKind::ascii;
      } else if (kind == "binary") {
        header.data = DataKind::binary;
      } else if (kind == "binary_compressed") {
        header.data = DataKind::binary_compressed;
      } else {
        ctx.fail("unknown DATA type ", values.empty() ? std::string("''") : detail::quoted(values[0]),
                 " (expected ascii, binary or binary_compressed)");
      }
      header.data_offset = pos;
      has_data = true;
      break;
    } else {
      ctx.fail("header line ", line_no, ": unknown keyword ", detail::quoted(key));
    }
  }
  if (!has_data) ctx.fail("header has no DATA line (file truncated or not a PCD file)");
  if (!names) ctx.fail("header has no FIELDS line");
  if (!sizes) ctx.fail("header has no SIZE line");
  if (!types) ctx.fail("header has no TYPE line");
  const std::size_t n_fields = names->size();
  auto check_entries = [&](std::string_view key, std::size_t n) {
    if (n != n_fields) ctx.fail(key, " has ", n, " entries but FIELDS has ", n_fields);
  };
  check_entries("SIZE", sizes->size());
  check_entries("TYPE", types->size());
  if (counts) check_entries("COUNT", counts->size());

  for (std::size_t f = 0; f < n_fields; ++f) {
    PcdField field;
    field.name = std::string((*names)[f]);
    std::uint64_t size = 0;
    if (!detail::parse_number((*sizes)[f], size) || (size != 1 && size != 2 && size != 4 && size != 8)) {
      ctx.fail("SIZE ", detail::quoted((*sizes)[f]), " of field '", field.name, "' is not 1, 2, 4 or 8");
    }
    field.size = static_cast<int>(size);
    const std::string_view type = (*types)[f];
    if (type != "I" && type != "U" && type != "F") {
      ctx.fail("TYPE ", detail::quoted(type), " of field '", field.name, "' is not I, U or F");
    }
    if (type == "F" && size != 4 && size != 8) {
      ctx.fail("field '", field.name, "' has TYPE F with SIZE ", size, " (float fields are 4 or 8 bytes)");
    }
    field.type = scalar_from_pcd(type[0], field.size);
    if (counts && (!detail::parse_number((*counts)[f], field.count) || field.count == 0)) {
      ctx.fail("COUNT ", detail::quoted((*counts)[f]), " of field '", field.name, "' is not a positive integer");
    }
    field.offset = header.point_size;
    field.first_value = header.values_per_point;
    header.values_per_point = detail::sat_add(header.values_per_point, field.count);
    header.point_size = detail::sat_add(header.point_size, detail::sat_mul(size, field.count));
    if (header.values_per_point > k_max_values_per_point) {
      ctx.fail("fields have more than ", k_max_values_per_point, " values per point in total");
    }
    header.fields.push_back(std::move(field));
  }
  for (std::string_view axis : {"x", "y", "z"}) {
    bool found = false;
    for (const PcdField& field : header.fields) {
      if (field.name != axis) continue;
      if (found) ctx.fail("field '", axis, "' appears twice");
      if (field.count != 1) ctx.fail("field '", axis, "' must have COUNT 1 (got ", field.count, ")");
      found = true;
    }
    if (!found) ctx.fail("has no field '", axis, "' (x, y and z are required)");
  }

  if (!width && !points) ctx.fail("header has neither WIDTH nor POINTS");
  const std::uint64_t w = width ? *width : *points;
  const std::uint64_t h = height.value_or(1);
  const std::uint64_t wh = detail::sat_mul(w, h);
  if (points && *points != wh) ctx.fail("POINTS ", *points, " is not WIDTH * HEIGHT = ", w, " * ", h);
  header.points = wh;
  return header;
}

// Where one value of a field goes in the result.
enum class SinkKind { position, value, color, label };

struct Sink {
  SinkKind kind;
  const PcdField* field;
  std::uint64_t component;  // 0..COUNT-1
  int index;                // axis (position) or first output field (value, color, label)
  bool alpha = false;       // color: also write "a"
};

struct Outputs {
  PointCloud cloud;
  std::vector<float*> values;
  float* positions = nullptr;
  std::uint32_t* labels = nullptr;
};

// Plans the sinks and allocates the result arrays (sizes already validated).
std::vector<Sink> plan_outputs(const PcdHeader& header, Outputs& out) {
  const auto n = static_cast<std::int64_t>(header.points);
  std::vector<Sink> sinks;
  std::vector<std::string> names;
  bool has_label = false;
  for (const PcdField& field : header.fields) {
    if (field.name == "_") continue;  // PCL's padding between struct members
    const int next = static_cast<int>(names.size());
    if (field.name == "x" || field.name == "y" || field.name == "z") {
      sinks.push_back({SinkKind::position, &field, 0, field.name[0] - 'x'});
    } else if ((field.name == "rgb" || field.name == "rgba") && field.size == 4 && field.count == 1) {
      const bool alpha = field.name == "rgba";
      sinks.push_back({SinkKind::color, &field, 0, next, alpha});
      names.insert(names.end(), {"r", "g", "b"});
      if (alpha) names.emplace_back("a");
    } else if (field.count == 1) {
      const bool label = field.name == "label" && !detail::scalar_is_float(field.type) && !has_label;
      has_label = has_label || label;
      sinks.push_back({label ? SinkKind::label : SinkKind::value, &field, 0, next});
      names.push_back(field.name);
    } else {
      for (std::uint64_t c = 0; c < field.count; ++c) {
        sinks.push_back({SinkKind::value, &field, c, static_cast<int>(names.size())});
        names.push_back(field.name + "_" + std::to_string(c));
      }
    }
  }
  out.cloud.positions = Array::empty({n, 3}, DType::f32, Device::cpu());
  out.positions = out.cloud.positions.data<float>();
  for (std::string& name : names) {
    Array values = Array::empty({n}, DType::f32, Device::cpu());
    out.values.push_back(values.data<float>());
    out.cloud.fields.emplace_back(std::move(name), std::move(values));
  }
  if (has_label) {
    out.cloud.labels = Array::empty({n}, DType::u32, Device::cpu());
    out.labels = out.cloud.labels->data<std::uint32_t>();
  }
  return sinks;
}

// A label must fit uint32 (signed files may store -1 and the like: kept as bits).
bool label_fits(std::int64_t v, Scalar t) {
  if (t == Scalar::u64) return static_cast<std::uint64_t>(v) <= UINT32_MAX;
  return v >= INT32_MIN && v <= static_cast<std::int64_t>(UINT32_MAX);
}

void store_color(const Sink& s, Outputs& out, std::int64_t i, std::uint32_t bits) {
  out.values[s.index][i] = static_cast<float>((bits >> 16) & 0xFF);
  out.values[s.index + 1][i] = static_cast<float>((bits >> 8) & 0xFF);
  out.values[s.index + 2][i] = static_cast<float>(bits & 0xFF);
  if (s.alpha) out.values[s.index + 3][i] = static_cast<float>(bits >> 24);
}

// Fills every sink from packed binary values: value i of sink s is at
// base(s) + i * stride(s). Used for both the struct and the SoA layout.
template <class Base, class Stride>
void fill_binary(const std::vector<Sink>& sinks, Outputs& out, std::int64_t n, Base base, Stride stride,
                 const ReadContext& ctx) {
  if (n == 0) return;
  for (const Sink& s : sinks) {
    const unsigned char* p0 = base(s);
    const std::size_t step = stride(s);
    auto at = [&](std::int64_t i) { return p0 + static_cast<std::size_t>(i) * step; };
    const Scalar type = s.field->type;
    switch (s.kind) {
      case SinkKind::position:
        for (std::int64_t i = 0; i < n; ++i)
          out.positions[3 * i + s.index] = detail::load_as_float(at(i), type, k_swap);
        break;
      case SinkKind::value:
        for (std::int64_t i = 0; i < n; ++i) out.values[s.index][i] = detail::load_as_float(at(i), type, k_swap);
        break;
      case SinkKind::color:
        for (std::int64_t i = 0; i < n; ++i)
          store_color(s, out, i, detail::load_unsigned<std::uint32_t>(at(i), k_swap));
        break;
      case SinkKind::label:
        for (std::int64_t i = 0; i < n; ++i) {
          const std::int64_t v = detail::load_as_int(at(i), type, k_swap);
          if (!label_fits(v, type)) ctx.fail("point ", i, ": label ", v, " does not fit uint32");
          out.labels[i] = static_cast<std::uint32_t>(v);
          out.values[s.index][i] = detail::load_as_float(at(i), type, k_swap);
        }
        break;
    }
  }
}

void read_binary(std::string_view payload, const PcdHeader& header, const std::vector<Sink>& sinks, Outputs& out,
                 const ReadContext& ctx) {
  const auto* data = reinterpret_cast<const unsigned char*>(payload.data());
  fill_binary(
      sinks, out, static_cast<std::int64_t>(header.points),
      [&](const Sink& s) { return data + s.field->offset + s.component * static_cast<std::uint64_t>(s.field->size); },
      [&](const Sink&) { return header.point_size; }, ctx);
}

// Checks the size words against the header and the file, then decompresses
// the structure-of-arrays payload (before any result array is allocated).
std::vector<unsigned char> decompress(std::string_view payload, const PcdHeader& header, const ReadContext& ctx) {
  if (payload.size() < 8) ctx.fail("binary_compressed data is truncated: no size words after the header");
  const auto* data = reinterpret_cast<const unsigned char*>(payload.data());
  const std::uint64_t compressed = detail::load_unsigned<std::uint32_t>(data, k_swap);
  const std::uint64_t plain = detail::load_unsigned<std::uint32_t>(data + 4, k_swap);
  const std::uint64_t expected = detail::sat_mul(header.points, header.point_size);
  if (plain != expected) {
    ctx.fail("binary_compressed uncompressed size ", plain, " is not POINTS * point size = ", header.points, " * ",
             header.point_size, " = ", expected);
  }
  if (compressed > payload.size() - 8) {
    ctx.fail("binary_compressed compressed size ", compressed, " exceeds the ", payload.size() - 8,
             " bytes after the size words (truncated file?)");
  }
  if (plain > detail::sat_mul(compressed, k_lzf_max_ratio)) {
    ctx.fail("binary_compressed sizes are inconsistent: ", compressed, " LZF bytes cannot expand to ", plain);
  }
  std::vector<unsigned char> soa(plain);
  if (plain == 0) return soa;
  errno = 0;
  const unsigned got =
      lzf_decompress(data + 8, static_cast<unsigned>(compressed), soa.data(), static_cast<unsigned>(plain));
  if (got != plain) {
    ctx.fail("LZF decompression failed: ",
             got == 0 ? (errno == E2BIG ? "output larger than the uncompressed size" : "corrupt compressed data")
                      : "output shorter than the uncompressed size",
             " (", compressed, " -> ", plain, " bytes)");
  }
  return soa;
}

void read_soa(const std::vector<unsigned char>& soa, const PcdHeader& header, const std::vector<Sink>& sinks,
              Outputs& out, const ReadContext& ctx) {
  const std::uint64_t n = header.points;
  fill_binary(
      sinks, out, static_cast<std::int64_t>(n),
      [&](const Sink& s) {
        return soa.data() + n * s.field->offset + s.component * static_cast<std::uint64_t>(s.field->size);
      },
      [&](const Sink& s) { return s.field->count * static_cast<std::uint64_t>(s.field->size); }, ctx);
}

// rgb written as text: an integer (current PCL) is the packed value itself; a
// float (older PCL, TYPE F) carries the packed bits in its representation.
bool parse_packed_color(std::string_view token, Scalar type, std::uint32_t& bits) {
  std::int64_t v = 0;
  if (!detail::scalar_is_float(type) || token.find_first_not_of("0123456789") == std::string_view::npos) {
    if (!detail::parse_number(token, v) || v < INT32_MIN || v > static_cast<std::int64_t>(UINT32_MAX)) return false;
    bits = static_cast<std::uint32_t>(v);
    return true;
  }
  float f = 0.0f;
  if (!detail::parse_number(token, f)) return false;
  bits = std::bit_cast<std::uint32_t>(f);
  return true;
}

void read_ascii(std::string_view payload, const PcdHeader& header, const std::vector<Sink>& sinks, Outputs& out,
                const ReadContext& ctx) {
  std::vector<std::string_view> tokens;
  std::size_t pos = 0;
  std::int64_t i = 0;
  const auto n = static_cast<std::int64_t>(header.points);
  while (auto line = detail::next_line(payload, pos)) {
    tokens.clear();
    std::string_view rest = *line;
    bool too_many = false;
    for (std::string_view t = detail::next_token(rest); !t.empty(); t = detail::next_token(rest)) {
      too_many = tokens.size() == header.values_per_point;
      if (too_many) break;  // never store more tokens than a point has
      tokens.push_back(t);
    }
    if (tokens.empty()) continue;
    if (i == n) ctx.fail("ascii data has more than POINTS = ", n, " lines");
    if (tokens.size() != header.values_per_point || too_many) {
      ctx.fail("ascii data line for point ", i, " does not have ", header.values_per_point, " values");
    }
    for (const Sink& s : sinks) {
      const std::string_view token = tokens[s.field->first_value + s.component];
      const Scalar type = s.field->type;
      bool ok = true;
      float value = 0.0f;
      switch (s.kind) {
        case SinkKind::position:
          ok = detail::parse_scalar_as_float(token, type, value);
          out.positions[3 * i + s.index] = value;
          break;
        case SinkKind::value:
          ok = detail::parse_scalar_as_float(token, type, value);
          out.values[s.index][i] = value;
          break;
        case SinkKind::color: {
          std::uint32_t bits = 0;
          ok = parse_packed_color(token, type, bits);
          store_color(s, out, i, bits);
          break;
        }
        case SinkKind::label: {
          std::int64_t v = 0;
          ok = detail::parse_scalar_as_int(token, type, v) && label_fits(v, type) &&
               detail::parse_scalar_as_float(token, type, value);
          out.labels[i] = static_cast<std::uint32_t>(v);
          out.values[s.index][i] = value;
          break;
        }
      }
      if (!ok) {
        ctx.fail("ascii data line for point ", i, ": value ", detail::quoted(token), " of field '", s.field->name,
                 "' is not a valid ", s.field->size, "-byte ", detail::scalar_is_float(type) ? "float" : "integer");
      }
    }
    ++i;
  }
  if (i != n) ctx.fail("ascii data has ", i, " points but POINTS is ", n, " (truncated file?)");
}

}  // namespace

PointCloud read_pcd(const std::filesystem::path& path) {
  const ReadContext ctx("read_pcd", path);
  const std::string file = detail::load_file(ctx);
  const PcdHeader header = parse_header(file, ctx);
  const std::string_view payload = std::string_view(file).substr(header.data_offset);

  // Check the claimed point count against the bytes present before allocating.
  std::vector<unsigned char> soa;
  switch (header.data) {
    case DataKind::ascii:
      // Each value takes at least one character and one separator.
      if (detail::sat_mul(header.points, 2 * header.values_per_point) > payload.size() + 1) {
        ctx.fail("POINTS ", header.points, " cannot fit in the ", payload.size(),
                 " bytes of ascii data (truncated file?)");
      }
      break;
    case DataKind::binary:
      if (detail::sat_mul(header.points, header.point_size) > payload.size()) {
        ctx.fail("binary data is truncated: POINTS ", header.points, " * point size ", header.point_size, " needs ",
                 detail::sat_mul(header.points, header.point_size), " bytes, the file has ", payload.size());
      }
      break;
    case DataKind::binary_compressed:
      soa = decompress(payload, header, ctx);
      break;
  }

  Outputs out;
  const std::vector<Sink> sinks = plan_outputs(header, out);
  switch (header.data) {
    case DataKind::ascii:
      read_ascii(payload, header, sinks, out, ctx);
      break;
    case DataKind::binary:
      read_binary(payload, header, sinks, out, ctx);
      break;
    case DataKind::binary_compressed:
      read_soa(soa, header, sinks, out, ctx);
      break;
  }
  return std::move(out.cloud);
}

}  // namespace lattice::io
