// LAS reader: exact values from synthetic files of every point data format
// (0-10) under LAS 1.0-1.4 headers, with extra bytes, VLRs and trailing data;
// the real ../shared/data/las/simple.las; and malformed input (corrupt
// headers, truncation at every length, random byte mutations), which must
// raise IoError naming the problem -- never crash or allocate absurdly.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <gtest/gtest.h>

#include "lattice/io/point_cloud.hpp"
#include "support/test_support.hpp"

namespace {

namespace fs = std::filesystem;
using lattice::Array;
using lattice::IoError;
using lattice::io::PointCloud;
using lattice::testing::Rng;
using lattice::testing::TempDir;
using lattice::testing::write_file;

// ---- building files ---------------------------------------------------------

// Writes the little-endian bytes of `v` at `at` (the string must be long enough).
template <class T>
void put_at(std::string& out, std::size_t at, T v) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
  out.replace(at, sizeof(T), reinterpret_cast<const char*>(b), sizeof(T));
}

template <class T>
void put(std::string& out, T v) {
  out.append(sizeof(T), '\0');
  put_at(out, out.size() - sizeof(T), v);
}

// Fixed record sizes of point data formats 0-10 (LAS 1.4 R15, table 7 onwards).
constexpr std::array<std::size_t, 11> k_record_size{20, 28, 26, 34, 57, 63, 30, 36, 38, 59, 67};

bool is_extended(int format) { return format >= 6; }
bool has_gps_time(int format) { return format != 0 && format != 2; }
bool has_rgb(int format) {
  return format == 2 || format == 3 || format == 5 || format == 7 || format == 8 || format == 10;
}
bool has_nir(int format) { return format == 8 || format == 10; }
bool has_wave_packet(int format) { return format == 4 || format == 5 || format == 9 || format == 10; }

// One point record's values as stored in the file.
struct LasPoint {
  std::array<std::int32_t, 3> xyz{};
  std::uint16_t intensity = 0;
  int return_number = 0, number_of_returns = 0;  // 3 bits each (formats 0-5), 4 bits (6-10)
  std::uint8_t classification = 0;               // 5 bits (formats 0-5), 8 bits (6-10)
  int flags = 0;                                 // synthetic/key-point/withheld(/overlap): must not leak into the class
  int scan_angle = 0;                            // int8 degrees (formats 0-5), int16 0.006-degree units (6-10)
  std::uint8_t user_data = 0;
  std::uint16_t point_source_id = 0;
  double gps_time = 0.0;
  std::array<std::uint16_t, 3> rgb{};
  std::uint16_t nir = 0;
};

// Four points with extreme and ordinary values for the format's bit widths.
std::vector<LasPoint> sample_points(int format) {
  const bool ext = is_extended(format);
  const int max_returns = ext ? 15 : 7;
  return {
      LasPoint{},
      {{INT32_MAX, INT32_MIN, -1},
       65535,
       max_returns,
       max_returns,
       std::uint8_t(ext ? 255 : 31),
       ext ? 15 : 7,
       ext ? -30000 : -90,
       255,
       65535,
       1e9 + 0.5,
       {65535, 0, 256},
       65535},
      {{123456, -7890, 42}, 1234, 2, 3, 2, 5, ext ? 30000 : 90, 17, 7326, 245380.78254962614, {68, 77, 88}, 1000},
      {{-5, 5, 100000}, 1, 1, 1, 6, 0, -1, 1, 1, -3.25, {1, 2, 3}, 7},
  };
}

constexpr std::array<double, 3> k_scale{0.01, 0.001, 0.25};
constexpr std::array<double, 3> k_offset{638000.5, -2000.0, 0.0};

struct LasOptions {
  int format = 3;
  int minor = 2;
  std::size_t extra_bytes = 0;                // per record, beyond the format's fixed size
  std::size_t vlr_payload = 0;                // > 0: one VLR with this many bytes after its 54-byte header
  std::size_t trailing_bytes = 0;             // after the point records (waveform data, EVLRs)
  std::optional<std::uint32_t> legacy_count;  // default: N (0 for formats 6-10)
  std::optional<std::uint64_t> count_64;      // default: N (LAS 1.4 only)
};

std::size_t header_size(int minor) { return minor <= 2 ? 227 : minor == 3 ? 235 : 375; }

std::string record(const LasPoint& p, int format, std::size_t extra_bytes) {
  std::string r;
  for (std::int32_t v : p.xyz) put(r, v);
  put(r, p.intensity);
  // The scan direction and edge-of-flight-line bits are set to show they are ignored.
  if (is_extended(format)) {
    put(r, static_cast<std::uint8_t>(p.return_number | (p.number_of_returns << 4)));
    put(r, static_cast<std::uint8_t>(p.flags | (2 << 4) | (1 << 6) | (1 << 7)));  // scanner channel 2
    put(r, p.classification);
    put(r, p.user_data);
    put(r, static_cast<std::int16_t>(p.scan_angle));
    put(r, p.point_source_id);
  } else {
    put(r, static_cast<std::uint8_t>(p.return_number | (p.number_of_returns << 3) | (1 << 6) | (1 << 7)));
    put(r, static_cast<std::uint8_t>(p.classification | (p.flags << 5)));
    put(r, static_cast<std::int8_t>(p.scan_angle));
    put(r, p.user_data);
    put(r, p.point_source_id);
  }
  if (has_gps_time(format)) put(r, p.gps_time);
  if (has_rgb(format)) {
    for (std::uint16_t c : p.rgb) put(r, c);
  }
  if (has_nir(format)) put(r, p.nir);
  if (has_wave_packet(format)) r.append(29, '\xEE');
  EXPECT_EQ(r.size(), k_record_size[static_cast<std::size_t>(format)]) << "test bug: format " << format;
  r.append(extra_bytes, '\xCD');
  return r;
}

std::string make_las(const std::vector<LasPoint>& points, const LasOptions& o) {
  const std::size_t hsize = header_size(o.minor);
  const std::size_t vlr_size = o.vlr_payload > 0 ? 54 + o.vlr_payload : 0;
  const std::size_t record_length = k_record_size[static_cast<std::size_t>(o.format)] + o.extra_bytes;
  const std::size_t n = points.size();
  std::string out(hsize, '\0');
  out.replace(0, 4, "LASF");
  put_at(out, 4, std::uint16_t{42});  // file source id
  out[24] = 1;
  out[25] = static_cast<char>(o.minor);
  out.replace(26, 12, "lattice test");
  put_at(out, 94, static_cast<std::uint16_t>(hsize));
  put_at(out, 96, static_cast<std::uint32_t>(hsize + vlr_size));
  put_at(out, 100, std::uint32_t{vlr_size > 0 ? 1u : 0u});
  out[104] = static_cast<char>(o.format);
  put_at(out, 105, static_cast<std::uint16_t>(record_length));
  const bool legacy_zero = o.minor == 4 && is_extended(o.format);
  put_at(out, 107, o.legacy_count.value_or(legacy_zero ? 0u : static_cast<std::uint32_t>(n)));
  for (std::size_t axis = 0; axis < 3; ++axis) {
    put_at(out, 131 + 8 * axis, k_scale[axis]);
    put_at(out, 155 + 8 * axis, k_offset[axis]);
    double lo = 0.0, hi = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double v = points[i].xyz[axis] * k_scale[axis] + k_offset[axis];
      lo = i == 0 ? v : std::min(lo, v);
      hi = i == 0 ? v : std::max(hi, v);
    }
    put_at(out, 179 + 16 * axis, hi);
    put_at(out, 187 + 16 * axis, lo);
  }
  if (o.minor == 4) put_at(out, 247, o.count_64.value_or(n));
  if (vlr_size > 0) {
    std::string vlr(54, '\0');
    vlr.replace(2, 7, "lattice");
    put_at(vlr, 18, std::uint16_t{7});
    put_at(vlr, 20, static_cast<std::uint16_t>(o.vlr_payload));
    out += vlr + std::string(o.vlr_payload, 'V');
  }
  for (const LasPoint& p : points) out += record(p, o.format, o.extra_bytes);
  out.append(o.trailing_bytes, 'T');
  return out;
}

// The smallest LAS 1.x minor version that defines the format.
int minor_for(int format) { return format <= 1 ? 0 : format <= 3 ? 2 : format <= 5 ? 3 : 4; }

// ---- checking results -------------------------------------------------------

std::uint32_t bits(float v) { return std::bit_cast<std::uint32_t>(v); }

// Bitwise per-element equality.
void expect_same_floats(const Array& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.dtype(), lattice::DType::f32) << what;
  const std::vector<float> v = got.to_vector<float>();
  ASSERT_EQ(v.size(), want.size()) << what;
  for (std::size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(bits(v[i]), bits(want[i])) << what << "[" << i << "]: got " << v[i] << ", want " << want[i];
  }
}

std::vector<std::string> field_names(const PointCloud& cloud) {
  std::vector<std::string> names;
  for (const auto& [name, values] : cloud.fields) names.push_back(name);
  return names;
}

std::vector<std::string> expected_names(int format) {
  std::vector<std::string> names{"intensity",  "return_number", "number_of_returns", "classification",
                                 "scan_angle", "user_data",     "point_source_id"};
  if (has_gps_time(format)) names.emplace_back("gps_time");
  if (has_rgb(format)) names.insert(names.end(), {"red", "green", "blue"});
  if (has_nir(format)) names.emplace_back("nir");
  return names;
}

// Every field of every point, exactly.
void expect_points(const PointCloud& cloud, const std::vector<LasPoint>& points, int format) {
  const std::size_t n = points.size();
  ASSERT_EQ(cloud.size(), static_cast<std::int64_t>(n));
  ASSERT_EQ(field_names(cloud), expected_names(format));
  std::vector<float> xyz;
  std::map<std::string, std::vector<float>> want;
  std::vector<std::uint32_t> labels;
  for (const LasPoint& p : points) {
    for (std::size_t axis = 0; axis < 3; ++axis) {
      xyz.push_back(static_cast<float>(p.xyz[axis] * k_scale[axis] + k_offset[axis]));
    }
    want["intensity"].push_back(p.intensity);
    want["return_number"].push_back(static_cast<float>(p.return_number));
    want["number_of_returns"].push_back(static_cast<float>(p.number_of_returns));
    want["classification"].push_back(p.classification);
    want["scan_angle"].push_back(is_extended(format) ? static_cast<float>(p.scan_angle * 0.006)
                                                     : static_cast<float>(p.scan_angle));
    want["user_data"].push_back(p.user_data);
    want["point_source_id"].push_back(p.point_source_id);
    want["gps_time"].push_back(static_cast<float>(p.gps_time));
    want["red"].push_back(p.rgb[0]);
    want["green"].push_back(p.rgb[1]);
    want["blue"].push_back(p.rgb[2]);
    want["nir"].push_back(p.nir);
    labels.push_back(p.classification);
  }
  expect_same_floats(cloud.positions, xyz, "positions");
  ASSERT_EQ(cloud.positions.shape().str(), lattice::Shape({static_cast<std::int64_t>(n), 3}).str());
  for (const auto& [name, values] : cloud.fields) expect_same_floats(values, want[name], "field " + name);
  ASSERT_TRUE(cloud.labels.has_value());
  ASSERT_EQ(cloud.labels->dtype(), lattice::DType::u32);
  EXPECT_EQ(cloud.labels->to_vector<std::uint32_t>(), labels);
}

// The call must throw IoError whose message contains `needle`.
void expect_io_error(const std::function<void()>& read, const std::string& needle, const std::string& what) {
  try {
    read();
    ADD_FAILURE() << what << ": no IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << what << ": message \"" << e.what() << "\" lacks \"" << needle << "\"";
  }
}

// A byte patch of a valid file and a fragment of the error it must cause.
struct Patch {
  std::string what;
  std::function<void(std::string&)> apply;
  std::string needle;
};

}  // namespace

TEST(LasReader, EveryPointFormatExact) {
  TempDir dir;
  for (int format = 0; format <= 10; ++format) {
    SCOPED_TRACE("format " + std::to_string(format));
    const std::vector<LasPoint> points = sample_points(format);
    LasOptions o;
    o.format = format;
    o.minor = minor_for(format);
    write_file(dir / "p.las", make_las(points, o));
    expect_points(lattice::io::read_las(dir / "p.las"), points, format);
    // Every later version reads the same records.
    for (int minor = o.minor + 1; minor <= 4; ++minor) {
      o.minor = minor;
      write_file(dir / "p.las", make_las(points, o));
      expect_points(lattice::io::read_las(dir / "p.las"), points, format);
    }
  }
}

TEST(LasReader, ExtraBytesVlrsAndTrailingDataAreSkipped) {
  TempDir dir;
  for (int format : {0, 1, 2, 3, 6, 8}) {
    SCOPED_TRACE("format " + std::to_string(format));
    const std::vector<LasPoint> points = sample_points(format);
    LasOptions o;
    o.format = format;
    o.minor = format >= 6 ? 4 : 2;
    o.extra_bytes = 13;
    o.vlr_payload = 40;
    o.trailing_bytes = 100;
    write_file(dir / "x.las", make_las(points, o));
    expect_points(lattice::io::read_las(dir / "x.las"), points, format);
  }
}

TEST(LasReader, Las14PointCounts) {
  TempDir dir;
  const std::vector<LasPoint> points = sample_points(1);
  LasOptions o;
  o.format = 1;
  o.minor = 4;
  // Legacy count 0: the 64-bit count applies.
  o.legacy_count = 0;
  write_file(dir / "c.las", make_las(points, o));
  expect_points(lattice::io::read_las(dir / "c.las"), points, 1);
  // Both counts set and equal (formats 0-5 of a 1.4 file with < 2^32 points).
  o.legacy_count = 4;
  write_file(dir / "c.las", make_las(points, o));
  expect_points(lattice::io::read_las(dir / "c.las"), points, 1);
  // Both set but different.
  o.count_64 = 3;
  write_file(dir / "c.las", make_las(points, o));
  expect_io_error([&] { lattice::io::read_las(dir / "c.las"); },
                  "legacy point count 4 disagrees with the 64-bit point count 3", "count mismatch");
  // Format 6 from a 1.4 writer: legacy 0, 64-bit count only.
  LasOptions o6;
  o6.format = 6;
  o6.minor = 4;
  write_file(dir / "c.las", make_las(sample_points(6), o6));
  EXPECT_EQ(lattice::io::read_las(dir / "c.las").size(), 4);
  // The 64-bit count is ignored before 1.4 (the bytes belong to the VLRs there).
  LasOptions o3;
  o3.minor = 3;
  o3.vlr_payload = 200;
  std::string bytes = make_las(sample_points(3), o3);
  put_at(bytes, 247, std::uint64_t{1} << 62);
  write_file(dir / "c.las", bytes);
  EXPECT_EQ(lattice::io::read_las(dir / "c.las").size(), 4);
}

TEST(LasReader, EmptyCloudAndDispatchByExtension) {
  TempDir dir;
  for (int format : {0, 3, 7}) {
    LasOptions o;
    o.format = format;
    o.minor = format >= 6 ? 4 : 2;
    write_file(dir / "e.las", make_las({}, o));
    const PointCloud cloud = lattice::io::read_las(dir / "e.las");
    EXPECT_EQ(cloud.size(), 0);
    EXPECT_EQ(cloud.positions.shape().str(), lattice::Shape({0, 3}).str());
    EXPECT_EQ(field_names(cloud), expected_names(format));
    ASSERT_TRUE(cloud.labels.has_value());
    EXPECT_EQ(cloud.labels->numel(), 0);
  }
  const std::vector<LasPoint> points = sample_points(3);
  write_file(dir / "scan.LAS", make_las(points, LasOptions{}));
  expect_points(lattice::io::read_point_cloud(dir / "scan.LAS"), points, 3);
  expect_io_error([&] { lattice::io::read_point_cloud(dir / "none.las"); },
                  "[read_las] file '" + (dir / "none.las").string() + "': does not exist", "missing file");
  write_file(dir / "scan.laz", make_las(points, LasOptions{}));
  expect_io_error([&] { lattice::io::read_point_cloud(dir / "scan.laz"); }, "unsupported extension '.laz'", ".laz");
}

TEST(LasReader, RejectsMalformedHeaders) {
  TempDir dir;
  LasOptions o;
  o.vlr_payload = 10;
  const std::string good = make_las(sample_points(3), o);  // 1.2, format 3, 4 points, offset 291
  LasOptions o14;
  o14.format = 6;
  o14.minor = 4;
  const std::string good14 = make_las(sample_points(6), o14);
  const auto set_f64 = [](std::size_t at, double v) { return [=](std::string& b) { put_at(b, at, v); }; };
  const std::vector<Patch> patches{
      {"bad signature", [](std::string& b) { b[3] = 'G'; },
       "does not start with the LAS signature 'LASF' (got 'LASG'; not a LAS file)"},
      {"text file", [](std::string& b) { b = "ply\nformat ascii 1.0\n"; }, "does not start with the LAS signature"},
      {"header only 100 bytes", [](std::string& b) { b.resize(100); },
       "is truncated: 100 bytes, shorter than the 227-byte LAS public header block"},
      {"version 2.0", [](std::string& b) { b[24] = 2, b[25] = 0; },
       "unsupported LAS version 2.0 (expected 1.0 to 1.4)"},
      {"version 1.5", [](std::string& b) { b[25] = 5; }, "unsupported LAS version 1.5"},
      {"version 0.9", [](std::string& b) { b[24] = 0, b[25] = 9; }, "unsupported LAS version 0.9"},
      {"header size below 1.2's", [](std::string& b) { put_at(b, 94, std::uint16_t{226}); },
       "header size 226 is smaller than the 227 bytes of a LAS 1.2 public header block"},
      {"1.3 with a 1.2 header size", [](std::string& b) { b[25] = 3; },
       "header size 227 is smaller than the 235 bytes of a LAS 1.3"},
      {"header size beyond the file", [](std::string& b) { put_at(b, 94, std::uint16_t{65535}); },
       "is truncated: header size 65535 exceeds the file size"},
      {"LAZ bit 7", [](std::string& b) { b[104] = static_cast<char>(0x83); },
       "point data format byte 131 has the compression bits set: LAZ compression is not supported"},
      {"LAZ bit 6", [](std::string& b) { b[104] = static_cast<char>(0x43); }, "LAZ compression is not supported"},
      {"format 11", [](std::string& b) { b[104] = 11; }, "unsupported point data format 11 (expected 0 to 10)"},
      {"format 63", [](std::string& b) { b[104] = 63; }, "unsupported point data format 63"},
      {"record length 33 for format 3", [](std::string& b) { put_at(b, 105, std::uint16_t{33}); },
       "point record length 33 is smaller than the 34 bytes of point data format 3"},
      {"record length 0", [](std::string& b) { put_at(b, 105, std::uint16_t{0}); }, "point record length 0"},
      {"format 5 in format 3's records", [](std::string& b) { b[104] = 5; },
       "point record length 34 is smaller than the 63 bytes of point data format 5"},
      {"offset beyond the file", [&](std::string& b) { put_at(b, 96, static_cast<std::uint32_t>(good.size() + 1)); },
       "offset to point data " + std::to_string(good.size() + 1) + " is beyond the end of the file (" +
           std::to_string(good.size()) + " bytes"},
      {"offset 0xFFFFFFFF", [](std::string& b) { put_at(b, 96, std::uint32_t{0xFFFFFFFF}); },
       "offset to point data 4294967295 is beyond the end of the file"},
      {"offset inside the header", [](std::string& b) { put_at(b, 96, std::uint32_t{100}); },
       "offset to point data 100 lies inside the 227-byte header"},
      {"one point too many", [](std::string& b) { put_at(b, 107, std::uint32_t{5}); },
       "point data is truncated: 5 points * record length 34 needs 170 bytes, the file has 136"},
      {"count 0xFFFFFFFF", [](std::string& b) { put_at(b, 107, std::uint32_t{0xFFFFFFFF}); },
       "point data is truncated: 4294967295 points"},
      {"zero x scale", set_f64(131, 0.0), "x scale factor 0 is not a finite non-zero number"},
      {"NaN z scale", set_f64(147, std::numeric_limits<double>::quiet_NaN()), "z scale factor"},
      {"infinite y offset", set_f64(163, std::numeric_limits<double>::infinity()), "y offset inf is not finite"},
  };
  for (const Patch& p : patches) {
    std::string bytes = good;
    p.apply(bytes);
    write_file(dir / "bad.las", bytes);
    expect_io_error([&] { lattice::io::read_las(dir / "bad.las"); }, p.needle, p.what);
  }
  const std::vector<Patch> patches14{
      {"1.4 with a 1.2 header size", [](std::string& b) { put_at(b, 94, std::uint16_t{227}); },
       "header size 227 is smaller than the 375 bytes of a LAS 1.4 public header block"},
      {"64-bit count 2^62", [](std::string& b) { put_at(b, 247, std::uint64_t{1} << 62); },
       "point data is truncated: 4611686018427387904 points * record length 30"},
      {"64-bit count all ones", [](std::string& b) { put_at(b, 247, ~std::uint64_t{0}); },
       "point data is truncated: 18446744073709551615 points"},
      {"1.4 header truncated", [](std::string& b) { b.resize(300); },
       "is truncated: header size 375 exceeds the file size 300"},
  };
  for (const Patch& p : patches14) {
    std::string bytes = good14;
    p.apply(bytes);
    write_file(dir / "bad.las", bytes);
    expect_io_error([&] { lattice::io::read_las(dir / "bad.las"); }, p.needle, p.what);
  }
  // The message names the reader and the file.
  std::string bytes = good;
  bytes[104] = 11;
  write_file(dir / "bad.las", bytes);
  expect_io_error([&] { lattice::io::read_las(dir / "bad.las"); },
                  "[read_las] file '" + (dir / "bad.las").string() + "': unsupported point data format 11", "prefix");
}

TEST(LasReader, TruncatedAtEveryLength) {
  TempDir dir;
  LasOptions o12;
  o12.extra_bytes = 3;
  o12.vlr_payload = 30;
  LasOptions o14;
  o14.format = 7;
  o14.minor = 4;
  for (const LasOptions& o : {o12, o14}) {
    const std::string good = make_las(sample_points(o.format), o);
    const std::size_t header = header_size(o.minor);
    const std::size_t points_at = header + (o.vlr_payload > 0 ? 54 + o.vlr_payload : 0);
    for (std::size_t length = 0; length < good.size(); ++length) {
      write_file(dir / "t.las", good.substr(0, length));
      const std::string needle = length < 4           ? "does not start with the LAS signature"
                                 : length < 227       ? "shorter than the 227-byte LAS public header"
                                 : length < header    ? "exceeds the file size"
                                 : length < points_at ? "is beyond the end of the file"
                                                      : "point data is truncated";
      expect_io_error([&] { lattice::io::read_las(dir / "t.las"); }, needle,
                      "format " + std::to_string(o.format) + " truncated to " + std::to_string(length));
    }
  }
}

TEST(LasReader, RandomMutationsNeverCrash) {
  TempDir dir;
  LasOptions o;
  o.vlr_payload = 8;
  o.extra_bytes = 2;
  const std::string good = make_las(sample_points(3), o);
  Rng rng(20250611);
  const auto pick = [&](std::size_t n) {
    return static_cast<std::size_t>(rng.integer(0, static_cast<std::int64_t>(n) - 1));
  };
  int successes = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::string bytes = good;
    switch (iter % 5) {
      case 0:  // random bytes anywhere
        for (int k = 0, n = static_cast<int>(rng.integer(1, 4)); k < n; ++k) {
          bytes[pick(bytes.size())] = static_cast<char>(rng.integer(0, 255));
        }
        break;
      case 1:  // a single bit flip in the header
        bytes[pick(227)] ^= static_cast<char>(1 << rng.integer(0, 7));
        break;
      case 2:  // a header word set to an extreme value
        put_at(bytes, pick(227 - 4), static_cast<std::uint32_t>(rng.integer(0, 1) == 0 ? 0xFFFFFFFFu : 0x7FFFFFFFu));
        break;
      case 3:  // a random header byte in the fields that matter (94..131)
        bytes[94 + pick(131 - 94)] = static_cast<char>(rng.integer(0, 255));
        break;
      default:  // mutate and truncate
        bytes[pick(bytes.size())] = static_cast<char>(rng.integer(0, 255));
        bytes.resize(pick(bytes.size() + 1));
        break;
    }
    write_file(dir / "m.las", bytes);
    try {
      const PointCloud cloud = lattice::io::read_point_cloud(dir / "m.las");
      ++successes;
      const std::int64_t n = cloud.size();
      EXPECT_EQ(cloud.positions.shape().str(), lattice::Shape({n, 3}).str()) << "mutation " << iter;
      for (const auto& [name, values] : cloud.fields) EXPECT_EQ(values.numel(), n) << name << " mutation " << iter;
      ASSERT_TRUE(cloud.labels.has_value());
      EXPECT_EQ(cloud.labels->numel(), n) << "mutation " << iter;
    } catch (const IoError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "mutation " << iter << ": threw a non-IoError exception: " << e.what();
    }
  }
  // Most record-byte mutations leave a readable file: the loop exercises both outcomes.
  EXPECT_GT(successes, 0);
  EXPECT_LT(successes, 300);
}

TEST(LasRealFiles, SimpleLas12Format3) {
  LATTICE_REQUIRE_SHARED_FILE(path, "las/simple.las");
  const std::string bytes = lattice::testing::read_file(path);
  const PointCloud cloud = lattice::io::read_las(path);
  ASSERT_EQ(cloud.size(), 1065);
  ASSERT_EQ(bytes[104], 3) << "simple.las is expected to hold point data format 3";
  EXPECT_EQ(field_names(cloud), expected_names(3));

  // Header scale and bounds, read straight from the file (LAS 1.2 offsets).
  const auto f64 = [&](std::size_t at) {
    double v = 0.0;
    std::memcpy(&v, bytes.data() + at, 8);  // little-endian host, as the build assumes
    return v;
  };
  const std::vector<float> xyz = cloud.positions.to_vector<float>();
  for (std::size_t axis = 0; axis < 3; ++axis) {
    const double scale = f64(131 + 8 * axis), hi = f64(179 + 16 * axis), lo = f64(187 + 16 * axis);
    for (std::size_t i = 0; i < 1065; ++i) {
      const float v = xyz[3 * i + axis];
      // Within one scale step of the bounds, plus float32's rounding of the absolute value.
      const double tol = scale + std::abs(v) * std::numeric_limits<float>::epsilon();
      EXPECT_GE(v, lo - tol) << "axis " << axis << " point " << i;
      EXPECT_LE(v, hi + tol) << "axis " << axis << " point " << i;
    }
  }

  const std::vector<float> cls = cloud.field("classification")->to_vector<float>();
  const std::vector<float> ret = cloud.field("return_number")->to_vector<float>();
  const std::vector<float> nret = cloud.field("number_of_returns")->to_vector<float>();
  const std::vector<std::uint32_t> labels = cloud.labels->to_vector<std::uint32_t>();
  std::set<std::uint32_t> classes;
  for (std::size_t i = 0; i < 1065; ++i) {
    // ASPRS standard classes of LAS 1.4 (0-18), all within the 5 bits of formats 0-5.
    EXPECT_LE(labels[i], 18u) << "point " << i;
    EXPECT_EQ(static_cast<float>(labels[i]), cls[i]) << "point " << i;
    EXPECT_GE(ret[i], 1.0f) << "point " << i;
    EXPECT_LE(ret[i], nret[i]) << "point " << i;
    EXPECT_LE(nret[i], 5.0f) << "point " << i;
    classes.insert(labels[i]);
  }
  EXPECT_EQ(classes, (std::set<std::uint32_t>{1, 2}));  // unclassified and ground

  // The first and last points as `pdal info --point` reports them.
  struct Known {
    std::size_t i;
    double x, y, z, gps_time;
    float intensity, return_number, number_of_returns, classification, scan_angle, user_data, point_source_id, red,
        green, blue;
  };
  for (const Known& k :
       {Known{0, 637012.24, 849028.31, 431.66, 245380.78254962614, 143, 1, 1, 1, -9, 132, 7326, 68, 77, 88},
        Known{1064, 637342.85, 853240.32, 423.92, 249773.20172406783, 116, 1, 1, 1, 9, 124, 7334, 138, 107, 136}}) {
    SCOPED_TRACE("point " + std::to_string(k.i));
    EXPECT_EQ(xyz[3 * k.i], static_cast<float>(k.x));
    EXPECT_EQ(xyz[3 * k.i + 1], static_cast<float>(k.y));
    EXPECT_EQ(xyz[3 * k.i + 2], static_cast<float>(k.z));
    const auto at = [&](const char* name) { return cloud.field(name)->to_vector<float>()[k.i]; };
    EXPECT_EQ(at("gps_time"), static_cast<float>(k.gps_time));
    EXPECT_EQ(at("intensity"), k.intensity);
    EXPECT_EQ(at("return_number"), k.return_number);
    EXPECT_EQ(at("number_of_returns"), k.number_of_returns);
    EXPECT_EQ(at("classification"), k.classification);
    EXPECT_EQ(at("scan_angle"), k.scan_angle);
    EXPECT_EQ(at("user_data"), k.user_data);
    EXPECT_EQ(at("point_source_id"), k.point_source_id);
    EXPECT_EQ(at("red"), k.red);
    EXPECT_EQ(at("green"), k.green);
    EXPECT_EQ(at("blue"), k.blue);
  }

  // Truncated copies of the real file fail cleanly.
  TempDir dir;
  const std::size_t size = bytes.size();
  for (std::size_t length : {std::size_t{0}, std::size_t{3}, std::size_t{226}, std::size_t{227}, std::size_t{228},
                             std::size_t{261}, size / 2, size - 34, size - 1}) {
    write_file(dir / "t.las", bytes.substr(0, length));
    EXPECT_THROW(lattice::io::read_las(dir / "t.las"), IoError) << length;
  }
}
