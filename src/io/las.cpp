// LAS reader (ASPRS LAS 1.0-1.4, point data record formats 0-10, uncompressed).
//
// Layout of the file (all little endian):
//   public header block   "LASF", version, header size, offset to point data,
//                         point format and record length, point counts, scale
//                         and offset per axis, bounds
//   variable length records (skipped: they lie between the header and the
//                         offset to point data)
//   point records         count * record length bytes from the offset; each
//                         record starts with the format's fixed layout, and
//                         any bytes beyond it ("extra bytes") are skipped
//   (1.3+) waveform data, (1.4) extended VLRs after the points: ignored
// The header is validated completely and the claimed point count is checked
// against the bytes actually present before anything is allocated.
#include <array>
#include <bit>
#include <cmath>
#include <cstring>

#include "io/reader_util.hpp"
#include "lattice/io/point_cloud.hpp"

namespace lattice::io {

namespace {

using detail::ReadContext;

constexpr bool k_swap = detail::needs_swap(/*big_endian=*/false);

// Public header block: minimum sizes per version and the byte offsets used.
constexpr std::uint64_t k_header_size_1_0 = 227;  // LAS 1.0-1.2
constexpr std::uint64_t k_header_size_1_3 = 235;  // + start of waveform data
constexpr std::uint64_t k_header_size_1_4 = 375;  // + EVLRs, 64-bit counts
constexpr std::size_t k_at_version = 24;
constexpr std::size_t k_at_header_size = 94;
constexpr std::size_t k_at_point_offset = 96;
constexpr std::size_t k_at_format = 104;
constexpr std::size_t k_at_record_length = 105;
constexpr std::size_t k_at_legacy_count = 107;
constexpr std::size_t k_at_scale = 131;     // x, y, z float64
constexpr std::size_t k_at_offset = 155;    // x, y, z float64
constexpr std::size_t k_at_count_64 = 247;  // LAS 1.4 only

constexpr int k_max_format = 10;
// Fixed record size of each point data format (4, 5, 9 and 10 end with a
// 29-byte wave packet descriptor, which is not read).
constexpr std::array<std::uint64_t, k_max_format + 1> k_min_record_length{20, 28, 26, 34, 57, 63, 30, 36, 38, 59, 67};

// Where the optional parts of a record are, by format; -1 when absent.
struct RecordLayout {
  bool extended = false;  // formats 6-10: 4-bit returns, full-byte class, int16 scan angle
  int gps_time = -1;
  int rgb = -1;
  int nir = -1;
};

RecordLayout layout_of(int format) {
  switch (format) {
    case 0:
      return {};
    case 1:
    case 4:
      return {false, 20, -1, -1};
    case 2:
      return {false, -1, 20, -1};
    case 3:
    case 5:
      return {false, 20, 28, -1};
    case 6:
    case 9:
      return {true, 22, -1, -1};
    case 7:
      return {true, 22, 30, -1};
    default:  // 8, 10
      return {true, 22, 30, 36};
  }
}

struct LasHeader {
  int format = 0;
  std::uint64_t record_length = 0;
  std::uint64_t point_offset = 0;
  std::uint64_t points = 0;
  std::array<double, 3> scale{};
  std::array<double, 3> offset{};
};

template <class U>
U load(const unsigned char* data, std::size_t at) {
  return detail::load_unsigned<U>(data + at, k_swap);
}

double load_f64(const unsigned char* data, std::size_t at) {
  return std::bit_cast<double>(load<std::uint64_t>(data, at));
}

LasHeader parse_header(std::string_view file, const ReadContext& ctx) {
  if (file.size() < 4 || file.substr(0, 4) != "LASF") {
    ctx.fail("does not start with the LAS signature 'LASF' (got ", detail::quoted(file.substr(0, 4)),
             "; not a LAS file)");
  }
  if (file.size() < k_header_size_1_0) {
    ctx.fail("is truncated: ", file.size(), " bytes, shorter than the ", k_header_size_1_0,
             "-byte LAS public header block");
  }
  const auto* data = reinterpret_cast<const unsigned char*>(file.data());
  LasHeader header;
  const int major = data[k_at_version];
  const int minor = data[k_at_version + 1];
  if (major != 1 || minor > 4) ctx.fail("unsupported LAS version ", major, ".", minor, " (expected 1.0 to 1.4)");

  const std::uint64_t header_size = load<std::uint16_t>(data, k_at_header_size);
  const std::uint64_t min_header = minor <= 2 ? k_header_size_1_0 : minor == 3 ? k_header_size_1_3 : k_header_size_1_4;
  if (header_size < min_header) {
    ctx.fail("header size ", header_size, " is smaller than the ", min_header, " bytes of a LAS 1.", minor,
             " public header block");
  }
  if (header_size > file.size()) {
    ctx.fail("is truncated: header size ", header_size, " exceeds the file size ", file.size());
  }

  const int format_byte = data[k_at_format];
  if ((format_byte & 0xC0) != 0) {
    ctx.fail("point data format byte ", format_byte,
             " has the compression bits set: LAZ compression is not supported (decompress to .las first)");
  }
  header.format = format_byte;
  if (header.format > k_max_format) {
    ctx.fail("unsupported point data format ", header.format, " (expected 0 to ", k_max_format, ")");
  }
  header.record_length = load<std::uint16_t>(data, k_at_record_length);
  const std::uint64_t min_record = k_min_record_length[static_cast<std::size_t>(header.format)];
  if (header.record_length < min_record) {
    ctx.fail("point record length ", header.record_length, " is smaller than the ", min_record,
             " bytes of point data format ", header.format);
  }

  header.point_offset = load<std::uint32_t>(data, k_at_point_offset);
  if (header.point_offset < header_size) {
    ctx.fail("offset to point data ", header.point_offset, " lies inside the ", header_size, "-byte header");
  }
  if (header.point_offset > file.size()) {
    ctx.fail("offset to point data ", header.point_offset, " is beyond the end of the file (", file.size(),
             " bytes; truncated file?)");
  }

  const std::uint64_t legacy_count = load<std::uint32_t>(data, k_at_legacy_count);
  header.points = legacy_count;
  if (minor == 4) {
    const std::uint64_t count_64 = load<std::uint64_t>(data, k_at_count_64);
    if (legacy_count == 0) {
      header.points = count_64;
    } else if (count_64 != legacy_count) {
      ctx.fail("legacy point count ", legacy_count, " disagrees with the 64-bit point count ", count_64);
    }
  }

  constexpr std::array<char, 3> k_axes{'x', 'y', 'z'};
  for (std::size_t axis = 0; axis < 3; ++axis) {
    header.scale[axis] = load_f64(data, k_at_scale + 8 * axis);
    header.offset[axis] = load_f64(data, k_at_offset + 8 * axis);
    if (!std::isfinite(header.scale[axis]) || header.scale[axis] == 0.0) {
      ctx.fail(k_axes[axis], " scale factor ", header.scale[axis], " is not a finite non-zero number");
    }
    if (!std::isfinite(header.offset[axis])) ctx.fail(k_axes[axis], " offset ", header.offset[axis], " is not finite");
  }

  const std::uint64_t available = file.size() - header.point_offset;
  const std::uint64_t needed = detail::sat_mul(header.points, header.record_length);
  if (needed > available) {
    ctx.fail("point data is truncated: ", header.points, " points * record length ", header.record_length, " needs ",
             needed, " bytes, the file has ", available, " after the offset to point data");
  }
  return header;
}

// Output columns in the order they appear in PointCloud::fields.
enum Column : std::size_t {
  intensity,
  return_number,
  number_of_returns,
  classification,
  scan_angle,
  user_data,
  point_source_id,
  n_base_columns,
};

}  // namespace

PointCloud read_las(const std::filesystem::path& path) {
  const ReadContext ctx("read_las", path);
  const std::string file = detail::load_file(ctx);
  const LasHeader header = parse_header(file, ctx);
  const RecordLayout layout = layout_of(header.format);
  const auto n = static_cast<std::int64_t>(header.points);

  PointCloud cloud;
  cloud.positions = Array::empty({n, 3}, DType::f32, Device::cpu());
  std::vector<std::string> names{"intensity",  "return_number", "number_of_returns", "classification",
                                 "scan_angle", "user_data",     "point_source_id"};
  if (layout.gps_time >= 0) names.emplace_back("gps_time");
  if (layout.rgb >= 0) names.insert(names.end(), {"red", "green", "blue"});
  if (layout.nir >= 0) names.emplace_back("nir");
  std::vector<float*> columns;
  for (std::string& name : names) {
    Array values = Array::empty({n}, DType::f32, Device::cpu());
    columns.push_back(values.data<float>());
    cloud.fields.emplace_back(std::move(name), std::move(values));
  }
  cloud.labels = Array::empty({n}, DType::u32, Device::cpu());
  float* positions = cloud.positions.data<float>();
  std::uint32_t* labels = cloud.labels->data<std::uint32_t>();

  // Every record lies inside the file: parse_header checked count * length.
  const auto* records = reinterpret_cast<const unsigned char*>(file.data()) + header.point_offset;
  for (std::int64_t i = 0; i < n; ++i) {
    const unsigned char* p = records + static_cast<std::size_t>(i) * header.record_length;
    for (std::size_t axis = 0; axis < 3; ++axis) {
      const auto raw = static_cast<std::int32_t>(load<std::uint32_t>(p, 4 * axis));
      positions[3 * i + static_cast<std::int64_t>(axis)] =
          static_cast<float>(raw * header.scale[axis] + header.offset[axis]);
    }
    columns[intensity][i] = load<std::uint16_t>(p, 12);
    const unsigned returns = p[14];
    std::uint32_t cls = 0;
    if (layout.extended) {
      columns[return_number][i] = static_cast<float>(returns & 0x0F);
      columns[number_of_returns][i] = static_cast<float>(returns >> 4);
      cls = p[16];
      columns[user_data][i] = p[17];
      columns[scan_angle][i] =
          static_cast<float>(static_cast<std::int16_t>(load<std::uint16_t>(p, 18)) * 0.006);  // 0.006 degree units
      columns[point_source_id][i] = load<std::uint16_t>(p, 20);
    } else {
      columns[return_number][i] = static_cast<float>(returns & 0x07);
      columns[number_of_returns][i] = static_cast<float>((returns >> 3) & 0x07);
      cls = p[15] & 0x1Fu;                                       // bits 5-7: synthetic, key-point, withheld flags
      columns[scan_angle][i] = static_cast<std::int8_t>(p[16]);  // whole degrees
      columns[user_data][i] = p[17];
      columns[point_source_id][i] = load<std::uint16_t>(p, 18);
    }
    columns[classification][i] = static_cast<float>(cls);
    labels[i] = cls;
    std::size_t next = n_base_columns;
    if (layout.gps_time >= 0) {
      columns[next++][i] = static_cast<float>(load_f64(p, static_cast<std::size_t>(layout.gps_time)));
    }
    if (layout.rgb >= 0) {
      for (std::size_t c = 0; c < 3; ++c) {
        columns[next++][i] = load<std::uint16_t>(p, static_cast<std::size_t>(layout.rgb) + 2 * c);
      }
    }
    if (layout.nir >= 0) columns[next][i] = load<std::uint16_t>(p, static_cast<std::size_t>(layout.nir));
  }
  return cloud;
}

}  // namespace lattice::io
