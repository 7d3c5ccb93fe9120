// PLY reader (ascii, binary_little_endian, binary_big_endian; version 1.0).
//
// The header declares elements in file order, each with a count and a list of
// scalar or list properties; the body stores the elements in that order. Only
// the "vertex" element is kept, but every element has to be walked because
// binary list properties have per-entry lengths. Claimed counts are checked
// against the body size before the vertex arrays are allocated, and every list
// length before it is skipped.
#include <array>
#include <span>
#include <utility>

#include "io/reader_util.hpp"
#include "lattice/io/point_cloud.hpp"

namespace lattice::io {

namespace {

using detail::ReadContext;
using detail::Scalar;

enum class Format { ascii, binary_little_endian, binary_big_endian };

struct PlyProperty {
  std::string name;
  Scalar type = Scalar::f32;  // the value type, or the item type of a list
  bool is_list = false;
  Scalar count_type = Scalar::u8;  // lists only
};

struct PlyElement {
  std::string name;
  std::uint64_t count = 0;
  std::vector<PlyProperty> properties;
};

struct PlyHeader {
  Format format = Format::ascii;
  std::vector<PlyElement> elements;
  std::size_t data_offset = 0;  // first body byte in the file
};

std::optional<Scalar> parse_type(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, Scalar>, 16> k_types{{
      {"char", Scalar::i8},
      {"int8", Scalar::i8},
      {"uchar", Scalar::u8},
      {"uint8", Scalar::u8},
      {"short", Scalar::i16},
      {"int16", Scalar::i16},
      {"ushort", Scalar::u16},
      {"uint16", Scalar::u16},
      {"int", Scalar::i32},
      {"int32", Scalar::i32},
      {"uint", Scalar::u32},
      {"uint32", Scalar::u32},
      {"float", Scalar::f32},
      {"float32", Scalar::f32},
      {"double", Scalar::f64},
      {"float64", Scalar::f64},
  }};
  for (const auto& [type_name, type] : k_types) {
    if (type_name == name) return type;
  }
  return std::nullopt;
}

std::string join(std::span<const std::string_view> tokens) {
  std::string out;
  for (std::string_view t : tokens) {
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

PlyHeader parse_header(std::string_view file, const ReadContext& ctx) {
  std::size_t pos = 0;
  const auto first = detail::next_line(file, pos);
  if (!first || *first != "ply") ctx.fail("does not start with the 'ply' magic line");

  PlyHeader header;
  bool has_format = false;
  std::uint64_t line_no = 1;
  while (auto line = detail::next_line(file, pos)) {
    ++line_no;
    const std::vector<std::string_view> tokens = detail::split_tokens(*line);
    if (tokens.empty()) continue;
    const std::string_view key = tokens[0];
    if (key == "comment" || key == "obj_info") continue;
    if (key == "end_header") {
      if (!has_format) ctx.fail("header has no format line");
      header.data_offset = pos;
      return header;
    }
    if (key == "format") {
      double version = 0.0;
      const bool version_ok = tokens.size() == 3 && detail::parse_number(tokens[2], version) && version == 1.0;
      const std::string_view fmt = tokens.size() > 1 ? tokens[1] : std::string_view();
      if (has_format || !version_ok ||
          (fmt != "ascii" && fmt != "binary_little_endian" && fmt != "binary_big_endian")) {
        ctx.fail("header line ", line_no, ": bad format line ", detail::quoted(join(tokens)),
                 " (expected one 'format ascii|binary_little_endian|binary_big_endian 1.0')");
      }
      header.format = fmt == "ascii"                  ? Format::ascii
                      : fmt == "binary_little_endian" ? Format::binary_little_endian
                                                      : Format::binary_big_endian;
      has_format = true;
    } else if (key == "element") {
      PlyElement element;
      if (tokens.size() != 3 || !detail::parse_number(tokens[2], element.count)) {
        ctx.fail("header line ", line_no, ": bad element line ", detail::quoted(join(tokens)),
                 " (expected 'element NAME COUNT')");
      }
      element.name = std::string(tokens[1]);
      header.elements.push_back(std::move(element));
    } else if (key == "property") {
      if (header.elements.empty()) ctx.fail("header line ", line_no, ": property before any element");
      PlyProperty property;
      const bool is_list = tokens.size() > 1 && tokens[1] == "list";
      if (tokens.size() != (is_list ? 5u : 3u)) {
        ctx.fail("header line ", line_no, ": bad property line ", detail::quoted(join(tokens)),
                 " (expected 'property TYPE NAME' or 'property list COUNT_TYPE ITEM_TYPE NAME')");
      }
      const std::string_view type_name = tokens[is_list ? 3 : 1];
      const auto type = parse_type(type_name);
      if (!type) ctx.fail("header line ", line_no, ": unknown property type ", detail::quoted(type_name));
      property.type = *type;
      property.is_list = is_list;
      if (is_list) {
        const auto count_type = parse_type(tokens[2]);
        if (!count_type || detail::scalar_is_float(*count_type)) {
          ctx.fail("header line ", line_no, ": list count type ", detail::quoted(tokens[2]), " is not an integer type");
        }
        property.count_type = *count_type;
      }
      property.name = std::string(tokens.back());
      PlyElement& element = header.elements.back();
      for (const PlyProperty& p : element.properties) {
        if (p.name == property.name) {
          ctx.fail("header line ", line_no, ": property '", p.name, "' of element '", element.name,
                   "' is declared twice");
        }
      }
      element.properties.push_back(std::move(property));
    } else {
      ctx.fail("header line ", line_no, ": unknown keyword ", detail::quoted(key));
    }
  }
  ctx.fail("header has no end_header line (file truncated or not a PLY file)");
}

// Where each vertex property goes: an axis (0..2), an output field, or nowhere (lists).
struct VertexSink {
  enum Kind { skip, position, field } kind = skip;
  int index = 0;
};

struct VertexOutputs {
  PointCloud cloud;
  float* positions = nullptr;
  std::vector<float*> fields;
  std::vector<VertexSink> sinks;  // one per vertex property
};

VertexOutputs plan_vertex(const PlyElement& vertex, const ReadContext& ctx) {
  VertexOutputs out;
  const auto n = static_cast<std::int64_t>(vertex.count);
  std::array<bool, 3> found{};
  for (const PlyProperty& p : vertex.properties) {
    VertexSink sink;
    if (p.name == "x" || p.name == "y" || p.name == "z") {
      if (p.is_list) ctx.fail("vertex property '", p.name, "' is a list, not a scalar");
      sink = {VertexSink::position, p.name[0] - 'x'};
      found[static_cast<std::size_t>(sink.index)] = true;
    } else if (!p.is_list) {
      sink = {VertexSink::field, static_cast<int>(out.cloud.fields.size())};
      out.cloud.fields.emplace_back(p.name, Array());
    }
    out.sinks.push_back(sink);
  }
  for (int axis = 0; axis < 3; ++axis) {
    if (!found[static_cast<std::size_t>(axis)]) {
      ctx.fail("vertex element has no property '", static_cast<char>('x' + axis), "' (x, y and z are required)");
    }
  }
  out.cloud.positions = Array::empty({n, 3}, DType::f32, Device::cpu());
  out.positions = out.cloud.positions.data<float>();
  for (auto& [name, values] : out.cloud.fields) {
    values = Array::empty({n}, DType::f32, Device::cpu());
    out.fields.push_back(values.data<float>());
  }
  return out;
}

void store(VertexOutputs& out, const VertexSink& sink, std::uint64_t row, float value) {
  if (sink.kind == VertexSink::position) {
    out.positions[3 * row + static_cast<std::uint64_t>(sink.index)] = value;
  } else if (sink.kind == VertexSink::field) {
    out.fields[static_cast<std::size_t>(sink.index)][row] = value;
  }
}

void read_binary(std::string_view body, const PlyHeader& header, const PlyElement* vertex, VertexOutputs& out,
                 const ReadContext& ctx) {
  const bool swap = detail::needs_swap(header.format == Format::binary_big_endian);
  const auto* data = reinterpret_cast<const unsigned char*>(body.data());
  std::size_t pos = 0;
  for (const PlyElement& element : header.elements) {
    const bool keep = &element == vertex;
    bool has_list = false;
    std::uint64_t row_bytes = 0;
    for (const PlyProperty& p : element.properties) {
      has_list = has_list || p.is_list;
      row_bytes += static_cast<std::uint64_t>(detail::scalar_size(p.is_list ? p.count_type : p.type));
    }
    if (!has_list && !keep) {  // fixed-size rows: skip the whole element at once
      const std::uint64_t bytes = detail::sat_mul(element.count, row_bytes);
      if (bytes > body.size() - pos) ctx.fail("binary data ends inside element '", element.name, "' (truncated file?)");
      pos += bytes;
      continue;
    }
    for (std::uint64_t row = 0; row < element.count; ++row) {
      for (std::size_t k = 0; k < element.properties.size(); ++k) {
        const PlyProperty& p = element.properties[k];
        const auto size = static_cast<std::size_t>(detail::scalar_size(p.is_list ? p.count_type : p.type));
        if (size > body.size() - pos) {
          ctx.fail("binary data ends inside element '", element.name, "' entry ", row, " (truncated file?)");
        }
        if (!p.is_list) {
          if (keep) store(out, out.sinks[k], row, detail::load_as_float(data + pos, p.type, swap));
          pos += size;
          continue;
        }
        const std::int64_t items = detail::load_as_int(data + pos, p.count_type, swap);
        pos += size;
        const std::uint64_t item_size = static_cast<std::uint64_t>(detail::scalar_size(p.type));
        if (items < 0 || detail::sat_mul(static_cast<std::uint64_t>(items), item_size) > body.size() - pos) {
          ctx.fail("list count ", items, " of property '", p.name, "' in element '", element.name, "' entry ", row,
                   " is too large for the remaining ", body.size() - pos, " bytes");
        }
        pos += static_cast<std::size_t>(items) * item_size;
      }
    }
  }
}

void read_ascii(std::string_view body, const PlyHeader& header, const PlyElement* vertex, VertexOutputs& out,
                const ReadContext& ctx) {
  std::string_view text = body;
  auto next = [&](const PlyElement& element, std::uint64_t row) {
    const std::string_view token = detail::next_token(text);
    if (token.empty()) {
      ctx.fail("ascii data ends inside element '", element.name, "' entry ", row, " (truncated file?)");
    }
    return token;
  };
  auto bad_value = [&](std::string_view token, const PlyElement& element, std::uint64_t row, const PlyProperty& p) {
    ctx.fail("value ", detail::quoted(token), " of property '", p.name, "' in element '", element.name, "' entry ", row,
             " is not a valid ", detail::scalar_is_float(p.type) ? "number" : "integer of its type");
  };
  for (const PlyElement& element : header.elements) {
    const bool keep = &element == vertex;
    for (std::uint64_t row = 0; row < element.count; ++row) {
      for (std::size_t k = 0; k < element.properties.size(); ++k) {
        const PlyProperty& p = element.properties[k];
        float value = 0.0f;
        if (!p.is_list) {
          const std::string_view token = next(element, row);
          if (!detail::parse_scalar_as_float(token, p.type, value)) bad_value(token, element, row, p);
          if (keep) store(out, out.sinks[k], row, value);
          continue;
        }
        const std::string_view count_token = next(element, row);
        std::int64_t items = 0;
        if (!detail::parse_scalar_as_int(count_token, p.count_type, items) || items < 0) {
          ctx.fail("list count ", detail::quoted(count_token), " of property '", p.name, "' in element '", element.name,
                   "' entry ", row, " is not a valid count");
        }
        // Each item takes at least a separator and a character.
        if (static_cast<std::uint64_t>(items) > text.size() / 2) {
          ctx.fail("list count ", items, " of property '", p.name, "' in element '", element.name, "' entry ", row,
                   " is too large for the remaining ", text.size(), " bytes");
        }
        for (std::int64_t j = 0; j < items; ++j) {
          const std::string_view token = next(element, row);
          if (!detail::parse_scalar_as_float(token, p.type, value)) bad_value(token, element, row, p);
        }
      }
    }
  }
  const std::string_view extra = detail::next_token(text);
  if (!extra.empty()) ctx.fail("unexpected data ", detail::quoted(extra), " after the last element");
}

}  // namespace

PointCloud read_ply(const std::filesystem::path& path) {
  const ReadContext ctx("read_ply", path);
  const std::string file = detail::load_file(ctx);
  const PlyHeader header = parse_header(file, ctx);
  const std::string_view body = std::string_view(file).substr(header.data_offset);

  const PlyElement* vertex = nullptr;
  std::uint64_t min_bytes = 0;  // smallest body the header allows (lists empty)
  for (const PlyElement& element : header.elements) {
    if (element.name == "vertex") {
      if (vertex != nullptr) ctx.fail("has more than one 'vertex' element");
      vertex = &element;
    }
    if (element.count > 0 && element.properties.empty()) {
      ctx.fail("element '", element.name, "' has ", element.count, " entries but no properties");
    }
    std::uint64_t row = 0;
    for (const PlyProperty& p : element.properties) {
      row += header.format == Format::ascii ? 2 : detail::scalar_size(p.is_list ? p.count_type : p.type);
    }
    min_bytes = detail::sat_add(min_bytes, detail::sat_mul(element.count, row));
  }
  if (vertex == nullptr) ctx.fail("has no 'vertex' element");
  // An ascii body may omit the final newline.
  const std::uint64_t available = body.size() + (header.format == Format::ascii ? 1 : 0);
  if (min_bytes > available) {
    ctx.fail("header claims elements needing at least ", min_bytes, " bytes but the body has only ", body.size(),
             " (truncated file or bad element count)");
  }

  VertexOutputs out = plan_vertex(*vertex, ctx);
  if (header.format == Format::ascii) {
    read_ascii(body, header, vertex, out, ctx);
  } else {
    read_binary(body, header, vertex, out, ctx);
  }
  return std::move(out.cloud);
}

}  // namespace lattice::io
