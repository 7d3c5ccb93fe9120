// Point-cloud file readers: exact values from synthetic files of every format
// and encoding, the real files under ../shared/data, and malformed input
// (corrupt headers, truncation at every length, random byte mutations), which
// must raise IoError -- never crash, hang or allocate absurdly.
#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <set>

#include <gtest/gtest.h>

#if __has_include(<lzf.h>)
#include <lzf.h>
#else
#include <liblzf/lzf.h>
#endif

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

// Appends the bytes of `v` in the requested byte order.
template <class T>
void put(std::string& out, T v, bool big_endian = false) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  if (big_endian != (std::endian::native == std::endian::big)) std::reverse(b, b + sizeof(T));
  out.append(reinterpret_cast<const char*>(b), sizeof(T));
}

// Shortest text that parses back to exactly `v`.
template <class T>
std::string text(T v) {
  if constexpr (std::is_integral_v<T>) {
    return std::to_string(+v);
  } else {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    return std::string(buf, end);
  }
}

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << "test bug: '" << from << "' not in file";
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

std::size_t offset_after(const std::string& s, const std::string& marker) {
  const auto at = s.find(marker);
  EXPECT_NE(at, std::string::npos);
  return at + marker.size();
}

// ---- checking results -------------------------------------------------------

std::uint32_t bits(float v) { return std::bit_cast<std::uint32_t>(v); }

// Bitwise per-element equality (distinguishes -0 and keeps NaN comparable).
void expect_same_floats(const Array& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.dtype(), lattice::DType::f32) << what;
  const std::vector<float> v = got.to_vector<float>();
  ASSERT_EQ(v.size(), want.size()) << what;
  for (std::size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(bits(v[i]), bits(want[i])) << what << "[" << i << "]: got " << v[i] << ", want " << want[i];
  }
}

void expect_field(const PointCloud& cloud, const std::string& name, const std::vector<float>& want) {
  const Array* f = cloud.field(name);
  ASSERT_NE(f, nullptr) << "field '" << name << "' missing";
  expect_same_floats(*f, want, "field " + name);
}

std::vector<std::string> field_names(const PointCloud& cloud) {
  std::vector<std::string> names;
  for (const auto& [name, values] : cloud.fields) names.push_back(name);
  return names;
}

// The reader must return normally or throw IoError; anything else fails.
void expect_ok_or_io_error(const std::function<void()>& read, const std::string& what) {
  try {
    read();
  } catch (const IoError&) {
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw a non-IoError exception: " << e.what();
  }
}

// The call must throw IoError whose message contains `needle` ("" skips the check).
void expect_io_error(const std::function<void()>& read, const std::string& needle, const std::string& what) {
  try {
    read();
    ADD_FAILURE() << what << ": no IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << what << ": message \"" << e.what() << "\" lacks \"" << needle << "\"";
  }
}

// A text edit of a valid file and a fragment of the error it must cause.
struct Edit {
  std::string from, to, needle;
};

// Applies each edit to `good`, writes it to `path` and expects `read` to reject it.
void expect_edits_rejected(const std::string& good, const std::vector<Edit>& edits, const fs::path& path,
                           const std::function<PointCloud(const fs::path&)>& read) {
  for (const Edit& e : edits) {
    write_file(path, replace_once(good, e.from, e.to));
    expect_io_error([&] { read(path); }, e.needle, "'" + e.from + "' -> '" + e.to + "'");
  }
}

// ---- synthetic PCD ----------------------------------------------------------

// Four points with every interesting field kind: F4 x y z, U1, I2, PCL "_"
// padding, an F4 field with COUNT 2, packed rgb (TYPE F), F8 and a U4 label.
struct PcdSample {
  std::vector<std::array<float, 3>> xyz{
      {1.5f, -2.25f, 0.1f}, {3.4028235e38f, -0.0f, 1e-30f}, {-7.0f, 123456.789f, 2.5e-7f}, {0.0f, 1.0f, -1.0f}};
  std::vector<std::uint8_t> intensity{0, 255, 17, 128};
  std::vector<std::int16_t> ring{-32768, 32767, -1, 0};
  std::vector<std::array<float, 2>> hist{{0.5f, -0.5f}, {1e10f, -3.75f}, {0.333f, 7.0f}, {-1e-5f, 2.0f}};
  std::vector<std::array<std::uint8_t, 3>> rgb{{255, 128, 1}, {0, 0, 0}, {12, 34, 56}, {250, 5, 99}};
  std::vector<double> time{0.1, -2.5, 1234567.891, 1e20};
  std::vector<std::uint32_t> label{0, 4294967295u, 10, (7u << 16) | 40u};

  float packed_rgb(std::size_t i) const {
    return std::bit_cast<float>((std::uint32_t{rgb[i][0]} << 16) | (std::uint32_t{rgb[i][1]} << 8) | rgb[i][2]);
  }
};

constexpr int k_pcd_fields = 10;  // x y z intensity ring _ hist rgb time label

// Little-endian bytes of field f of point i.
std::string pcd_cell(const PcdSample& s, std::size_t i, int f) {
  std::string b;
  if (f < 3) put(b, s.xyz[i][static_cast<std::size_t>(f)]);
  if (f == 3) put(b, s.intensity[i]);
  if (f == 4) put(b, s.ring[i]);
  if (f == 5) put(b, std::uint8_t{0xAB});  // "_" padding: never read
  if (f == 6) put(b, s.hist[i][0]), put(b, s.hist[i][1]);
  if (f == 7) put(b, s.packed_rgb(i));
  if (f == 8) put(b, s.time[i]);
  if (f == 9) put(b, s.label[i]);
  return b;
}

std::string pcd_line(const PcdSample& s, std::size_t i) {
  // rgb as an integer (current PCL) for even points, as float text (old PCL) for odd ones.
  const std::uint32_t packed = bits(s.packed_rgb(i));
  const std::string rgb = i % 2 == 0 ? text(packed) : text(s.packed_rgb(i));
  return text(s.xyz[i][0]) + " " + text(s.xyz[i][1]) + " " + text(s.xyz[i][2]) + " " + text(s.intensity[i]) + " " +
         text(s.ring[i]) + " 0 " + text(s.hist[i][0]) + " " + text(s.hist[i][1]) + " " + rgb + " " + text(s.time[i]) +
         " " + text(s.label[i]) + "\n";
}

std::string make_pcd(const PcdSample& s, const std::string& data) {
  std::string out =
      "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
      "FIELDS x y z intensity ring _ hist rgb time label\nSIZE 4 4 4 1 2 1 4 4 8 4\nTYPE F F F U I U F F F U\n"
      "COUNT 1 1 1 1 1 1 2 1 1 1\nWIDTH 2\nHEIGHT 2\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4\nDATA " +
      data + "\n";
  const std::size_t n = s.xyz.size();
  if (data == "ascii") {
    for (std::size_t i = 0; i < n; ++i) out += pcd_line(s, i);
  } else if (data == "binary") {
    for (std::size_t i = 0; i < n; ++i) {
      for (int f = 0; f < k_pcd_fields; ++f) out += pcd_cell(s, i, f);
    }
  } else {  // binary_compressed: structure of arrays, LZF-compressed
    std::string soa;
    for (int f = 0; f < k_pcd_fields; ++f) {
      for (std::size_t i = 0; i < n; ++i) soa += pcd_cell(s, i, f);
    }
    std::string packed(soa.size() * 2 + 64, '\0');
    const unsigned len = lzf_compress(soa.data(), static_cast<unsigned>(soa.size()), packed.data(),
                                      static_cast<unsigned>(packed.size()));
    EXPECT_GT(len, 0u);
    put(out, std::uint32_t{len});
    put(out, static_cast<std::uint32_t>(soa.size()));
    out += packed.substr(0, len);
  }
  return out;
}

// Column i -> float(get(i)) for the n sample points.
template <class Get>
std::vector<float> column(std::size_t n, Get get) {
  std::vector<float> v;
  for (std::size_t i = 0; i < n; ++i) v.push_back(static_cast<float>(get(i)));
  return v;
}

void expect_pcd_sample(const PointCloud& cloud, const PcdSample& s) {
  ASSERT_EQ(cloud.size(), 4);
  EXPECT_EQ(cloud.positions.shape(), (lattice::Shape{4, 3}));
  expect_same_floats(cloud.positions, column(12, [&](std::size_t k) { return s.xyz[k / 3][k % 3]; }), "positions");
  EXPECT_EQ(field_names(cloud),
            (std::vector<std::string>{"intensity", "ring", "hist_0", "hist_1", "r", "g", "b", "time", "label"}));
  expect_field(cloud, "intensity", column(4, [&](std::size_t i) { return s.intensity[i]; }));
  expect_field(cloud, "ring", column(4, [&](std::size_t i) { return s.ring[i]; }));
  expect_field(cloud, "hist_0", column(4, [&](std::size_t i) { return s.hist[i][0]; }));
  expect_field(cloud, "hist_1", column(4, [&](std::size_t i) { return s.hist[i][1]; }));
  expect_field(cloud, "r", column(4, [&](std::size_t i) { return s.rgb[i][0]; }));
  expect_field(cloud, "g", column(4, [&](std::size_t i) { return s.rgb[i][1]; }));
  expect_field(cloud, "b", column(4, [&](std::size_t i) { return s.rgb[i][2]; }));
  expect_field(cloud, "time", column(4, [&](std::size_t i) { return s.time[i]; }));
  expect_field(cloud, "label", column(4, [&](std::size_t i) { return s.label[i]; }));
  ASSERT_TRUE(cloud.labels.has_value());
  EXPECT_EQ(cloud.labels->to_vector<std::uint32_t>(), s.label);
}

// ---- synthetic PLY ----------------------------------------------------------

enum class PlyFormat { ascii, little, big };

// Writes values as ascii tokens or binary in one byte order.
struct PlyBody {
  PlyFormat format;
  std::string bytes;
  template <class T>
  void add(T v) {
    if (format == PlyFormat::ascii) {
      bytes += text(v) + " ";
    } else {
      put(bytes, v, format == PlyFormat::big);
    }
  }
  void end_row() {
    if (format == PlyFormat::ascii) bytes.back() = '\n';
  }
};

struct PlySample {
  std::vector<std::array<double, 3>> xyz{{0.1, -2.5, 1e-3}, {123.456789, 0.0, -0.0}, {1e30, -7.25, 3.0}};
  std::vector<std::uint8_t> red{0, 255, 7};
  std::vector<std::int16_t> temp{-32768, 32767, 5};
  std::vector<std::vector<float>> extra{{}, {1.5f, -2.0f}, {9.0f}};  // a list inside vertex: skipped
  std::vector<float> confidence{0.5f, 0.25f, -1.0f};
};

// Elements: face before or after vertex, then "edge" (scalars around a list).
std::string make_ply(const PlySample& s, PlyFormat format, bool face_first) {
  const char* names[] = {"ascii", "binary_little_endian", "binary_big_endian"};
  const std::string face_header = "element face 2\nproperty list uchar int vertex_indices\n";
  std::string out = std::string("ply\nformat ") + names[static_cast<int>(format)] +
                    " 1.0\ncomment synthetic test file\nobj_info made by test_io\n";
  out += face_first ? face_header : "";
  out +=
      "element vertex 3\nproperty double x\nproperty float64 y\nproperty double z\nproperty uchar red\n"
      "property int16 temp\nproperty list uint8 float32 extra\nproperty float confidence\n";
  out += face_first ? "" : face_header;
  out += "element edge 1\nproperty int vertex1\nproperty list ushort short stuff\nproperty uint vertex2\nend_header\n";

  PlyBody faces{format, {}};
  for (const std::vector<std::int32_t>& f : {std::vector<std::int32_t>{0, 1, 2}, {2, 1, 0, 1}}) {
    faces.add(static_cast<std::uint8_t>(f.size()));
    for (std::int32_t v : f) faces.add(v);
    faces.end_row();
  }
  PlyBody vertices{format, {}};
  for (std::size_t i = 0; i < 3; ++i) {
    for (double c : s.xyz[i]) vertices.add(c);
    vertices.add(s.red[i]);
    vertices.add(s.temp[i]);
    vertices.add(static_cast<std::uint8_t>(s.extra[i].size()));
    for (float e : s.extra[i]) vertices.add(e);
    vertices.add(s.confidence[i]);
    vertices.end_row();
  }
  PlyBody edges{format, {}};
  edges.add(std::int32_t{5});
  edges.add(std::uint16_t{3});
  for (std::int16_t v : {-1, 2, -3}) edges.add(v);
  edges.add(std::uint32_t{6});
  edges.end_row();
  out += face_first ? faces.bytes + vertices.bytes : vertices.bytes + faces.bytes;
  return out + edges.bytes;
}

void expect_ply_sample(const PointCloud& cloud, const PlySample& s) {
  ASSERT_EQ(cloud.size(), 3);
  expect_same_floats(cloud.positions, column(9, [&](std::size_t k) { return s.xyz[k / 3][k % 3]; }), "positions");
  EXPECT_EQ(field_names(cloud), (std::vector<std::string>{"red", "temp", "confidence"}));
  expect_field(cloud, "red", column(3, [&](std::size_t i) { return s.red[i]; }));
  expect_field(cloud, "temp", column(3, [&](std::size_t i) { return s.temp[i]; }));
  expect_field(cloud, "confidence", s.confidence);
  EXPECT_FALSE(cloud.labels.has_value());
}

// ---- synthetic KITTI --------------------------------------------------------

struct KittiSample {
  std::vector<std::array<float, 4>> points{
      {1.0f, -2.0f, 0.5f, 0.25f}, {-80.125f, 79.5f, -3.0f, 0.0f}, {1e-3f, 2e-3f, 3e-3f, 1.0f}};
  std::vector<std::uint32_t> labels{40, (3u << 16) | 10u, 0};
  std::string bin() const {
    std::string b;
    for (const auto& p : points) {
      for (float v : p) put(b, v);
    }
    return b;
  }
  std::string label_bytes() const {
    std::string b;
    for (std::uint32_t l : labels) put(b, l);
    return b;
  }
};

}  // namespace

TEST(KittiReader, BinAndLabelsRoundTrip) {
  TempDir dir;
  const KittiSample s;
  write_file(dir / "scan.bin", s.bin());
  write_file(dir / "scan.label", s.label_bytes());
  const PointCloud cloud = lattice::io::read_kitti_bin(dir / "scan.bin", dir / "scan.label");
  ASSERT_EQ(cloud.size(), 3);
  std::vector<float> xyz, remission;
  for (const auto& p : s.points) xyz.insert(xyz.end(), {p[0], p[1], p[2]}), remission.push_back(p[3]);
  expect_same_floats(cloud.positions, xyz, "positions");
  EXPECT_EQ(field_names(cloud), std::vector<std::string>{"remission"});
  expect_field(cloud, "remission", remission);
  ASSERT_TRUE(cloud.labels.has_value());
  EXPECT_EQ(cloud.labels->to_vector<std::uint32_t>(), s.labels);
  EXPECT_EQ(lattice::io::read_kitti_labels(dir / "scan.label").to_vector<std::uint32_t>(), s.labels);
  // Labels are never picked up implicitly, even when a sibling .label exists.
  EXPECT_FALSE(lattice::io::read_kitti_bin(dir / "scan.bin").labels.has_value());
}

TEST(KittiReader, RejectsBadSizesAndLabelCounts) {
  TempDir dir;
  const KittiSample s;
  write_file(dir / "scan.bin", s.bin());
  write_file(dir / "odd.bin", s.bin() + "x");
  write_file(dir / "short.label", s.label_bytes().substr(0, 8));
  write_file(dir / "odd.label", s.label_bytes().substr(0, 7));
  EXPECT_THROW(lattice::io::read_kitti_bin(dir / "scan.bin", dir / "missing.label"), IoError);
  EXPECT_THROW(lattice::io::read_kitti_labels(dir / "odd.label"), IoError);
  EXPECT_THROW(lattice::io::read_kitti_labels(dir / "short.label", 3), IoError);
  EXPECT_EQ(lattice::io::read_kitti_labels(dir / "short.label", 2).numel(), 2);
  const std::string name = (dir / "odd.bin").string();
  expect_io_error([&] { lattice::io::read_kitti_bin(name); },
                  "[read_kitti_bin] file '" + name + "': size 49 bytes is not a multiple of 16", "odd size");
  expect_io_error([&] { lattice::io::read_kitti_bin(dir / "scan.bin", dir / "short.label"); },
                  "has 2 labels but the scan has 3 points", "label count");
}

TEST(PcdReader, MixedTypesInEveryDataKind) {
  TempDir dir;
  for (const std::string data : {"ascii", "binary", "binary_compressed"}) {
    SCOPED_TRACE(data);
    const std::string good = make_pcd(PcdSample{}, data);
    write_file(dir / "m.pcd", good);
    expect_pcd_sample(lattice::io::read_pcd(dir / "m.pcd"), PcdSample{});
    // Optional header lines: POINTS (from WIDTH * HEIGHT) or WIDTH/HEIGHT (from POINTS), VERSION, VIEWPOINT.
    for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
             {"POINTS 4\n", ""}, {"WIDTH 2\nHEIGHT 2\n", ""}, {"VERSION 0.7\nFIELDS", "COLUMNS"}, {"VIEWPOINT", "#"}}) {
      write_file(dir / "m.pcd", replace_once(good, from, to));
      expect_pcd_sample(lattice::io::read_pcd(dir / "m.pcd"), PcdSample{});
    }
  }
}

TEST(PcdReader, LenientOldHeaderRgbaAndNaNs) {
  // v0.5-style: no VERSION, VIEWPOINT, COUNT or HEIGHT; comments, CRLF, "+",
  // nan/inf, a float beyond float32 range.
  TempDir dir;
  write_file(dir / "old.pcd",
             "# old file\r\nFIELDS x y z rgba label\r\nSIZE 4 4 4 4 4\r\nTYPE F F F U I\r\n# comment\r\n"
             "WIDTH 3\r\nPOINTS 3\r\nDATA ascii\r\n1 2 3 4278190335 -1\r\nnan nan nan 16909060 7\r\n"
             "+4.5 -inf 1e-50 0 2\r\n");
  const PointCloud cloud = lattice::io::read_pcd(dir / "old.pcd");
  ASSERT_EQ(cloud.size(), 3);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // 1e-50 is below float range: it rounds to 0 like strtof.
  expect_same_floats(cloud.positions, {1, 2, 3, nan, nan, nan, 4.5f, -inf, 0.0f}, "positions");
  EXPECT_EQ(field_names(cloud), (std::vector<std::string>{"r", "g", "b", "a", "label"}));
  expect_field(cloud, "r", {0, 2, 0});  // 0xFF0000FF, 0x01020304, 0
  expect_field(cloud, "g", {0, 3, 0});
  expect_field(cloud, "b", {255, 4, 0});
  expect_field(cloud, "a", {255, 1, 0});
  expect_field(cloud, "label", {-1, 7, 2});
  EXPECT_EQ(cloud.labels->to_vector<std::uint32_t>(), (std::vector<std::uint32_t>{0xFFFFFFFFu, 7, 2}));

  const PointCloud finite = lattice::io::drop_non_finite(cloud);
  ASSERT_EQ(finite.size(), 1);
  expect_same_floats(finite.positions, {1, 2, 3}, "finite positions");
  expect_field(finite, "a", {255});
  EXPECT_EQ(finite.labels->to_vector<std::uint32_t>(), std::vector<std::uint32_t>{0xFFFFFFFFu});
}

TEST(PcdReader, EmptyCloudIsValid) {
  TempDir dir;
  for (const std::string data : {"ascii", "binary"}) {
    write_file(dir / "e.pcd",
               "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 0\nHEIGHT 1\nPOINTS 0\nDATA " + data + "\n");
    const PointCloud cloud = lattice::io::read_pcd(dir / "e.pcd");
    EXPECT_EQ(cloud.size(), 0);
    EXPECT_EQ(cloud.positions.shape(), (lattice::Shape{0, 3}));
  }
}

TEST(PcdReader, RejectsCorruptHeaders) {
  TempDir dir;
  const std::vector<Edit> edits{
      {"POINTS 4\n", "POINTS 5\n", "POINTS 5 is not WIDTH * HEIGHT"},
      {"WIDTH 2\nHEIGHT 2\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4", "WIDTH 200000000\nHEIGHT 2\nPOINTS 400000000",
       "400000000"},  // far more points than the file holds
      {"WIDTH 2\nHEIGHT 2", "WIDTH 4294967296\nHEIGHT 4294967296", "is not WIDTH * HEIGHT"},  // product overflows
      {"SIZE 4 4 4 1", "SIZE 4 4 3 1", "SIZE '3' of field 'z' is not 1, 2, 4 or 8"},
      {"TYPE F F F U", "TYPE F F X U", "TYPE 'X' of field 'z'"},
      {"TYPE F F F U", "TYPE F F F F", "field 'intensity' has TYPE F with SIZE 1"},
      {"FIELDS x y z intensity ring _ hist rgb time label\n", "", "no FIELDS line"},
      {"FIELDS x y z", "FIELDS x y w", "has no field 'z'"},
      {"SIZE 4 4 4 1 2 1 4 4 8 4", "SIZE 4 4 4 1 2 1 4 4 8", "SIZE has 9 entries but FIELDS has 10"},
      {"TYPE F F F U I U F F F U", "TYPE F F F U I U F F F U U", "TYPE has 11 entries"},
      {"COUNT 1 1 1 1 1 1 2", "COUNT 1 1 1 1 1 1 0", "COUNT '0' of field 'hist'"},
      {"COUNT 1 1 1 1 1 1 2 1 1 1", "COUNT 1 1 1", "COUNT has 3 entries"},
      {"COUNT 1 1 1", "COUNT 1 1 2", "field 'z' must have COUNT 1"},
      {"COUNT 1 1 1 1 1 1 2", "COUNT 1 1 1 1 1 1 99999", "more than 65536 values per point"},
      {"VERSION 0.7", "VERSON 0.7", "unknown keyword 'VERSON'"},
      {"VIEWPOINT 0 0 0 1 0 0 0", "VIEWPOINT 0 0 0", "VIEWPOINT must have 7 numbers"},
      {"WIDTH 2", "WIDTH -2", "WIDTH must have one non-negative integer"},
      {"WIDTH 2", "WIDTH 2x", "WIDTH must have one non-negative integer"},
      {"HEIGHT 2\n", "HEIGHT 2\nHEIGHT 2\n", "duplicate HEIGHT"},
      {"\nDATA ", "\nDATA zip\nDATA ", "unknown DATA type 'zip'"},
      {"\nDATA ", "\nDAT ", "unknown keyword 'DAT'"},
  };
  for (const std::string data : {"ascii", "binary", "binary_compressed"}) {
    SCOPED_TRACE(data);
    const std::string good = make_pcd(PcdSample{}, data);
    expect_edits_rejected(good, edits, dir / "h.pcd", lattice::io::read_pcd);
    write_file(dir / "h.pcd", good.substr(0, good.find("DATA")));
    expect_io_error([&] { lattice::io::read_pcd(dir / "h.pcd"); }, "no DATA line", "header without DATA");
  }
}

TEST(PcdReader, RejectsCorruptCompressedPayload) {
  TempDir dir;
  const std::string good = make_pcd(PcdSample{}, "binary_compressed");
  const std::size_t at = offset_after(good, "DATA binary_compressed\n");
  std::uint32_t compressed = 0, plain = 0;
  std::memcpy(&compressed, good.data() + at, 4);
  std::memcpy(&plain, good.data() + at + 4, 4);
  auto with_sizes = [&](std::uint32_t c, std::uint32_t p) {
    std::string bad = good;
    std::memcpy(bad.data() + at, &c, 4);
    std::memcpy(bad.data() + at + 4, &p, 4);
    return bad;
  };
  std::string bad_backref = good;  // a 3-byte back-reference to 1 byte before the output's start
  bad_backref[at + 8] = static_cast<char>(0x20);
  bad_backref[at + 9] = static_cast<char>(0x00);
  const std::vector<std::array<std::string, 3>> cases{
      {"compressed size beyond the file", with_sizes(compressed + 1, plain), "exceeds the"},
      {"compressed size 4 GiB", with_sizes(0xFFFFFFFFu, plain), "exceeds the"},
      {"uncompressed size one too big", with_sizes(compressed, plain + 1), "is not POINTS * point size"},
      {"uncompressed size one too small", with_sizes(compressed, plain - 1), "is not POINTS * point size"},
      {"uncompressed size 4 GiB", with_sizes(compressed, 0xFFFFFFFFu), "uncompressed size 4294967295"},
      {"compressed size too small", with_sizes(compressed - 1, plain), "LZF decompression failed"},
      {"compressed size zero", with_sizes(0, plain), "cannot expand"},
      {"corrupt LZF data", bad_backref, "LZF decompression failed: corrupt"},
      {"no size words", good.substr(0, at + 7), "no size words"},
  };
  for (const auto& [what, bytes, needle] : cases) {
    write_file(dir / "c.pcd", bytes);
    expect_io_error([&] { lattice::io::read_pcd(dir / "c.pcd"); }, needle, what);
  }
}

TEST(PcdReader, RejectsBadAsciiData) {
  TempDir dir;
  const std::string good = make_pcd(PcdSample{}, "ascii");
  const std::string first = pcd_line(PcdSample{}, 0);
  const std::vector<Edit> edits{
      {"1.5 ", "1.5abc ", "value '1.5abc' of field 'x' is not a valid 4-byte float"},
      {"1.5 ", "1.5 1.5 ", "line for point 0 does not have 11 values"},
      {"1.5 ", "", "line for point 0 does not have 11 values"},
      {"1.5 ", "0x1 ", "value '0x1'"},
      {"1.5 ", "- ", "value '-'"},
      {"1.5 ", "+-1 ", "value '+-1'"},
      {first, first + first, "more than POINTS = 4 lines"},
      {" 255 ", " 256 ", "value '256' of field 'intensity'"},
      {" -32768 ", " -32769 ", "value '-32769' of field 'ring'"},
      {" 4294967295\n", " 4294967296\n", "of field 'label'"},
      {" 4294967295\n", " 1.5\n", "value '1.5' of field 'label'"},
      {"\n1.5 ", "\n\x01\x7f ", "value '\\x01\\x7f'"},  // non-printable bytes are escaped
  };
  expect_edits_rejected(good, edits, dir / "a.pcd", lattice::io::read_pcd);
  write_file(dir / "a.pcd", good.substr(0, good.size() - pcd_line(PcdSample{}, 3).size()));
  expect_io_error([&] { lattice::io::read_pcd(dir / "a.pcd"); }, "has 3 points but POINTS is 4", "missing line");
}

TEST(PlyReader, AllFormatsWithFacesBeforeAndAfterVertex) {
  TempDir dir;
  const PlySample s;
  for (PlyFormat format : {PlyFormat::ascii, PlyFormat::little, PlyFormat::big}) {
    for (bool face_first : {true, false}) {
      SCOPED_TRACE(testing::Message() << "format " << static_cast<int>(format) << ", face_first " << face_first);
      write_file(dir / "m.ply", make_ply(s, format, face_first));
      expect_ply_sample(lattice::io::read_ply(dir / "m.ply"), s);
    }
  }
}

TEST(PlyReader, RejectsCorruptHeaders) {
  TempDir dir;
  const std::vector<Edit> edits{
      {"ply\n", "plx\n", "does not start with the 'ply' magic line"},
      {" 1.0\n", " 2.0\n", "bad format line"},
      {"format ", "format binary 1.0\nformat ", "bad format line 'format binary 1.0'"},
      {"element vertex 3", "element vertex 99999999", "header claims elements needing at least"},
      {"element vertex 3", "element vertex -3", "bad element line"},
      {"element vertex 3", "element vertices 3", "has no 'vertex' element"},
      {"element vertex 3", "element vertex 3 4", "bad element line"},
      {"property double x", "property doubl x", "unknown property type 'doubl'"},
      {"property double x", "property double w", "vertex element has no property 'x'"},
      {"property double x", "property list uchar double x", "vertex property 'x' is a list"},
      {"property list uchar int", "property list float int", "list count type 'float' is not an integer type"},
      {"property list uchar int", "property list uchar", "bad property line"},
      {"property uchar red", "property uchar red\nproperty uchar red",
       "property 'red' of element 'vertex' is declared twice"},
      {"comment", "property float q\ncomment", "property before any element"},
      {"comment", "bogus", "unknown keyword 'bogus'"},
      {"end_header\n", "", ""},  // the body is then read as header lines
      {"end_header\n", "element vertex 1\nproperty float x\nend_header\n", "more than one 'vertex'"},
      {"end_header\n", "element empty 5\nend_header\n", "element 'empty' has 5 entries but no properties"},
  };
  for (PlyFormat format : {PlyFormat::ascii, PlyFormat::little, PlyFormat::big}) {
    SCOPED_TRACE(static_cast<int>(format));
    expect_edits_rejected(make_ply(PlySample{}, format, true), edits, dir / "h.ply", lattice::io::read_ply);
  }
}

TEST(PlyReader, RejectsHugeListCounts) {
  TempDir dir;
  // Binary: the only face claims 0xFFFFFFF0 uint items; the rest of the file is 24 bytes.
  for (bool big : {false, true}) {
    std::string f = std::string("ply\nformat ") + (big ? "binary_big_endian" : "binary_little_endian") +
                    " 1.0\nelement face 1\nproperty list uint int vertex_indices\nelement vertex 1\n"
                    "property float x\nproperty float y\nproperty float z\nend_header\n";
    put(f, std::uint32_t{0xFFFFFFF0u}, big);
    for (int i = 0; i < 6; ++i) put(f, 1.0f, big);
    write_file(dir / "l.ply", f);
    expect_io_error([&] { lattice::io::read_ply(dir / "l.ply"); },
                    "list count 4294967280 of property 'vertex_indices' in element 'face' entry 0 is too large for "
                    "the remaining 24 bytes",
                    "binary list");
  }
  const std::vector<Edit> edits{
      {"3 0 1 2\n", "250 0 1 2\n", "list count 250 of property 'vertex_indices'"},
      {"3 0 1 2\n", "-1 0 1 2\n", "list count '-1' of property 'vertex_indices' in element 'face' entry 0"},
      {"3 0 1 2\n", "300 0 1 2\n", "list count '300'"},
      {"3 0 1 2\n", "x 0 1 2\n", "list count 'x'"},
  };
  expect_edits_rejected(make_ply(PlySample{}, PlyFormat::ascii, true), edits, dir / "l.ply", lattice::io::read_ply);
}

TEST(PlyReader, RejectsBadAsciiData) {
  TempDir dir;
  const std::string good = make_ply(PlySample{}, PlyFormat::ascii, false);
  const std::vector<Edit> edits{
      {"0.1 ", "0.1x ", "value '0.1x' of property 'x' in element 'vertex' entry 0"},
      {"0.1 ", "nanx ", "value 'nanx'"},
      {" 255 ", " 256 ", "value '256' of property 'red' in element 'vertex' entry 1"},
      {" -32768 ", " -32769 ", "value '-32769' of property 'temp'"},
      {"-1 2 -3 6\n", "-1 2 -3\n", "ascii data ends inside element 'edge' entry 0"},
      {"-1 2 -3 6\n", "-1 2 -3 6\n7\n", "unexpected data '7' after the last element"},
  };
  expect_edits_rejected(good, edits, dir / "a.ply", lattice::io::read_ply);
  write_file(dir / "a.ply", good + "\n \n");  // trailing whitespace is fine
  EXPECT_EQ(lattice::io::read_ply(dir / "a.ply").size(), 3);
}

TEST(PointCloudIo, DispatchByExtension) {
  TempDir dir;
  write_file(dir / "scan.BIN", KittiSample{}.bin());
  write_file(dir / "cloud.Pcd", make_pcd(PcdSample{}, "binary"));
  write_file(dir / "mesh.PLY", make_ply(PlySample{}, PlyFormat::little, true));
  write_file(dir / "cloud.xyz", "1 2 3\n");
  const PointCloud kitti = lattice::io::read_point_cloud(dir / "scan.BIN");
  EXPECT_EQ(kitti.size(), 3);
  EXPECT_FALSE(kitti.labels.has_value());
  expect_pcd_sample(lattice::io::read_point_cloud(dir / "cloud.Pcd"), PcdSample{});
  expect_ply_sample(lattice::io::read_point_cloud(dir / "mesh.PLY"), PlySample{});
  EXPECT_THROW(lattice::io::read_point_cloud(dir / "cloud.xyz"), IoError);
  EXPECT_THROW(lattice::io::read_point_cloud(dir / "noextension"), IoError);
}

TEST(PointCloudIo, MissingFilesAndDirectoriesThrow) {
  TempDir dir;
  for (const std::string name : {"none.bin", "none.pcd", "none.ply"}) {
    EXPECT_THROW(lattice::io::read_point_cloud(dir / name), IoError) << name;
  }
  EXPECT_THROW(lattice::io::read_kitti_labels(dir / "none.label"), IoError);
  EXPECT_THROW(lattice::io::read_pcd(dir.path()), IoError);
  expect_io_error([&] { lattice::io::read_ply(dir / "none.ply"); },
                  "[read_ply] file '" + (dir / "none.ply").string() + "': does not exist", "missing file");
}

TEST(PointCloudIo, DropNonFiniteFiltersEveryArray) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  PointCloud cloud;
  cloud.positions = Array::from_vector<float>({0, 1, 2, nan, 0, 0, 3, 4, 5, 0, -inf, 0, 6, 7, inf, 8, 9, 10}, {6, 3},
                                              lattice::Device::cpu());
  cloud.fields.emplace_back("v", Array::from_vector<float>({0, 1, 2, 3, 4, 5}, {6}, lattice::Device::cpu()));
  cloud.fields.emplace_back("w", Array::from_vector<float>({nan, 1, 2, 3, 4, 5}, {6}, lattice::Device::cpu()));
  cloud.labels = Array::from_vector<std::uint32_t>({10, 11, 12, 13, 14, 15}, {6}, lattice::Device::cpu());
  const std::vector<float> before = cloud.positions.to_vector<float>();

  const PointCloud out = lattice::io::drop_non_finite(cloud);
  ASSERT_EQ(out.size(), 3);
  expect_same_floats(out.positions, {0, 1, 2, 3, 4, 5, 8, 9, 10}, "positions");
  expect_field(out, "v", {0, 2, 5});
  expect_field(out, "w", {nan, 2, 5});  // only x, y, z decide
  EXPECT_EQ(out.labels->to_vector<std::uint32_t>(), (std::vector<std::uint32_t>{10, 12, 15}));
  // The input is untouched and nothing is shared.
  EXPECT_EQ(cloud.size(), 6);
  const std::vector<float> after = cloud.positions.to_vector<float>();
  EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)), 0);
  EXPECT_FALSE(out.positions.shares_buffer_with(cloud.positions));
  EXPECT_FALSE(out.fields[0].second.shares_buffer_with(cloud.fields[0].second));

  PointCloud mismatched = cloud;
  mismatched.fields.emplace_back("short", Array::from_vector<float>({1, 2}, {2}, lattice::Device::cpu()));
  EXPECT_THROW(lattice::io::drop_non_finite(mismatched), lattice::ValueError);
  EXPECT_EQ(lattice::io::drop_non_finite(PointCloud{}).size(), 0);
}

// ---- real files -------------------------------------------------------------

namespace {

std::size_t count_non_finite(const PointCloud& cloud) {
  const std::vector<float> p = cloud.positions.to_vector<float>();
  std::size_t bad = 0;
  for (std::size_t i = 0; i < p.size(); i += 3) {
    bad += !(std::isfinite(p[i]) && std::isfinite(p[i + 1]) && std::isfinite(p[i + 2]));
  }
  return bad;
}

// Checks positions of point i against float32 bit patterns.
void expect_point_bits(const PointCloud& cloud, std::int64_t i, std::array<std::uint32_t, 3> want) {
  const std::vector<float> p = cloud.positions.rows(i, i + 1).to_vector<float>();
  for (std::size_t c = 0; c < 3; ++c) EXPECT_EQ(bits(p[c]), want[c]) << "point " << i << " axis " << c;
}

void expect_all_finite_or_dropped(const PointCloud& cloud) {
  const std::size_t bad = count_non_finite(cloud);
  const PointCloud finite = lattice::io::drop_non_finite(cloud);
  EXPECT_EQ(finite.size(), cloud.size() - static_cast<std::int64_t>(bad));
  EXPECT_EQ(count_non_finite(finite), 0u);
}

}  // namespace

TEST(IoRealFiles, SemanticKittiScanAndLabels) {
  LATTICE_REQUIRE_SHARED_FILE(bin, "semantickitti/000000.bin");
  LATTICE_REQUIRE_SHARED_FILE(label, "semantickitti/000000.label");
  const PointCloud cloud = lattice::io::read_kitti_bin(bin, label);
  ASSERT_EQ(cloud.size(), 123389);
  EXPECT_EQ(cloud.positions.shape(), (lattice::Shape{123389, 3}));
  ASSERT_NE(cloud.field("remission"), nullptr);
  EXPECT_EQ(cloud.field("remission")->numel(), 123389);
  expect_point_bits(cloud, 0, {0x42785265u, 0x40b69535u, 0x401446a5u});
  expect_point_bits(cloud, 123388, {0x40742785u, 0xbfb30575u, 0xbfdfa09fu});
  EXPECT_EQ(count_non_finite(cloud), 0u);
  ASSERT_TRUE(cloud.labels.has_value());
  const std::vector<std::uint32_t> labels = cloud.labels->to_vector<std::uint32_t>();
  ASSERT_EQ(labels.size(), 123389u);
  const std::set<std::uint32_t> raw_ids{0,  1,  10, 11, 13, 15, 16, 18, 20, 30,  31,  32,  40,  44,  48,  49,  50,
                                        51, 52, 60, 70, 71, 72, 80, 81, 99, 252, 253, 254, 255, 256, 257, 258, 259};
  for (std::size_t i = 0; i < labels.size(); ++i) {
    ASSERT_TRUE(raw_ids.count(labels[i] & 0xFFFFu)) << "label " << labels[i] << " at " << i;
  }
  EXPECT_EQ(labels.front(), 0u);
  EXPECT_EQ(labels.back(), 48u);
  EXPECT_EQ(lattice::io::read_point_cloud(bin).size(), 123389);
}

TEST(IoRealFiles, RoomScanCompressedPcd) {
  LATTICE_REQUIRE_SHARED_FILE(path, "pcl/room_scan1.pcd");
  const PointCloud cloud = lattice::io::read_pcd(path);
  ASSERT_EQ(cloud.size(), 112586);
  EXPECT_TRUE(cloud.fields.empty());
  EXPECT_FALSE(cloud.labels.has_value());
  expect_point_bits(cloud, 0, {0x3ddb822fu, 0x3d58ddb7u, 0x3fd7c72eu});
  expect_point_bits(cloud, 112585, {0x3adbaccbu, 0x3a57715fu, 0xbde13f65u});
  expect_all_finite_or_dropped(cloud);
}

TEST(IoRealFiles, TableScenePcdWithExtraFields) {
  LATTICE_REQUIRE_SHARED_FILE(path, "pcl/table_scene_lms400.pcd");
  const PointCloud cloud = lattice::io::read_point_cloud(path);
  ASSERT_EQ(cloud.size(), 460400);
  EXPECT_EQ(field_names(cloud), (std::vector<std::string>{"intensity", "distance", "sid"}));
  expect_point_bits(cloud, 0, {0xbf6f121bu, 0xbf2eb852u, 0xbf97df3bu});
  expect_point_bits(cloud, 460399, {0xbe03eea2u, 0x3ebf77afu, 0xbfa6ecc0u});
  const auto first_and_last = [&](const std::string& name) {
    const std::vector<float> v = cloud.field(name)->to_vector<float>();
    return std::array{bits(v.front()), bits(v.back())};
  };
  EXPECT_EQ(first_and_last("intensity"), (std::array{bits(12.0f), bits(20.0f)}));
  EXPECT_EQ(first_and_last("distance"), (std::array{0x3fbe147bu, 0x3f9b851fu}));
  EXPECT_EQ(first_and_last("sid"), (std::array{bits(7.0f), bits(335.0f)}));
  expect_all_finite_or_dropped(cloud);
}

TEST(IoRealFiles, BunnyAsciiPly) {
  LATTICE_REQUIRE_SHARED_FILE(path, "objects/bunny_res3.ply");
  const PointCloud cloud = lattice::io::read_ply(path);
  ASSERT_EQ(cloud.size(), 1889);
  EXPECT_EQ(field_names(cloud), (std::vector<std::string>{"confidence", "intensity"}));
  const std::vector<float> p = cloud.positions.rows(0, 2).to_vector<float>();
  EXPECT_EQ(p, (std::vector<float>{-0.0369122f, 0.127512f, 0.00276757f, -0.0457707f, 0.130327f, 0.00306785f}));
  EXPECT_EQ(cloud.field("confidence")->to_vector<float>()[0], 0.850855f);
  EXPECT_EQ(cloud.field("intensity")->to_vector<float>()[0], 0.5f);
  expect_all_finite_or_dropped(cloud);
}

// ---- robustness -------------------------------------------------------------

namespace {

struct Sample {
  std::string name;  // file name; its extension picks the reader
  std::string bytes;
  std::size_t header_end;       // first payload byte
  std::size_t must_fail_below;  // every shorter prefix must be rejected
};

std::vector<Sample> synthetic_samples() {
  const PcdSample pcd;
  const PlySample ply;
  std::vector<Sample> out;
  for (const std::string data : {"ascii", "binary", "binary_compressed"}) {
    const std::string bytes = make_pcd(pcd, data);
    // An ascii prefix can end inside the last number and still be valid.
    const std::size_t header = offset_after(bytes, "DATA " + data + "\n");
    out.push_back({"s_" + data + ".pcd", bytes, header, data == "ascii" ? header + 1 : bytes.size()});
  }
  for (PlyFormat f : {PlyFormat::ascii, PlyFormat::little, PlyFormat::big}) {
    const std::string bytes = make_ply(ply, f, true);
    const std::size_t header = offset_after(bytes, "end_header\n");
    out.push_back({"s_" + std::to_string(static_cast<int>(f)) + ".ply", bytes, header,
                   f == PlyFormat::ascii ? header + 1 : bytes.size()});
  }
  return out;
}

void read_prefix(const TempDir& dir, const Sample& s, std::size_t length) {
  const fs::path path = dir / s.name;
  write_file(path, s.bytes.substr(0, length));
  const std::string what = s.name + " truncated to " + std::to_string(length) + " bytes";
  if (length < s.must_fail_below) {
    EXPECT_THROW(lattice::io::read_point_cloud(path), IoError) << what;
  } else {
    expect_ok_or_io_error([&] { lattice::io::read_point_cloud(path); }, what);
  }
}

// KITTI has no header: a prefix is valid exactly when it holds whole points.
void read_kitti_prefix(const TempDir& dir, const std::string& bin, std::size_t length) {
  write_file(dir / "k.bin", bin.substr(0, length));
  if (length % 16 != 0) {
    EXPECT_THROW(lattice::io::read_kitti_bin(dir / "k.bin"), IoError) << length;
  } else {
    EXPECT_EQ(lattice::io::read_kitti_bin(dir / "k.bin").size(), static_cast<std::int64_t>(length / 16));
  }
}

}  // namespace

TEST(IoRobustness, SyntheticFilesTruncatedAtEveryLength) {
  TempDir dir;
  for (const Sample& s : synthetic_samples()) {
    for (std::size_t length = 0; length < s.bytes.size(); ++length) read_prefix(dir, s, length);
  }
  const std::string kitti = KittiSample{}.bin();
  for (std::size_t length = 0; length <= kitti.size(); ++length) read_kitti_prefix(dir, kitti, length);
}

TEST(IoRobustness, RealFilesTruncated) {
  LATTICE_REQUIRE_SHARED_FILE(room, "pcl/room_scan1.pcd");
  LATTICE_REQUIRE_SHARED_FILE(table, "pcl/table_scene_lms400.pcd");
  LATTICE_REQUIRE_SHARED_FILE(bunny, "objects/bunny_res3.ply");
  LATTICE_REQUIRE_SHARED_FILE(kitti, "semantickitti/000000.bin");
  TempDir dir;
  std::vector<Sample> samples;
  for (const auto& [name, path] : {std::pair{"room.pcd", room}, std::pair{"table.pcd", table}}) {
    const std::string bytes = lattice::testing::read_file(path);
    const std::size_t at = offset_after(bytes, "DATA binary_compressed\n");
    std::uint32_t compressed = 0;
    std::memcpy(&compressed, bytes.data() + at, 4);
    samples.push_back({name, bytes, at, at + 8 + compressed});  // bytes after the LZF data are allowed
  }
  const std::string ply = lattice::testing::read_file(bunny);
  const std::size_t ply_header = offset_after(ply, "end_header\n");
  samples.push_back({"bunny.ply", ply, ply_header, ply_header + 1});
  for (const Sample& s : samples) {
    const std::size_t h = s.header_end, size = s.bytes.size();
    std::vector<std::size_t> lengths{0, 1, 4, h / 2, h - 1, h, h + 1, h + 4, h + 8, h + 9, size - 16, size - 1};
    for (std::size_t k = 1; k < 32; ++k) lengths.push_back(size * k / 32);
    for (std::size_t k = 0; k < 24; ++k) lengths.push_back(s.must_fail_below - 12 + k);
    for (std::size_t length : lengths) {
      if (length < size) read_prefix(dir, s, length);
    }
  }
  const std::string bin = lattice::testing::read_file(kitti);
  for (std::size_t length : {std::size_t{0}, std::size_t{15}, std::size_t{16}, bin.size() / 2 + 3, bin.size() - 1}) {
    read_kitti_prefix(dir, bin, length);
  }
}

TEST(IoRobustness, RandomMutationsNeverCrash) {
  TempDir dir;
  std::vector<Sample> samples = synthetic_samples();
  samples.push_back({"k.bin", KittiSample{}.bin(), 0, 0});
  Rng rng(20240611);
  for (const Sample& s : samples) {
    for (int iter = 0; iter < 300; ++iter) {
      std::string bytes = s.bytes;
      const auto pick = [&](std::size_t n) {
        return static_cast<std::size_t>(rng.integer(0, static_cast<std::int64_t>(n) - 1));
      };
      switch (iter % 4) {
        case 0:  // random bytes
          for (int k = 0, n = static_cast<int>(rng.integer(1, 4)); k < n; ++k) {
            bytes[pick(bytes.size())] = static_cast<char>(rng.integer(0, 255));
          }
          break;
        case 1:  // a single bit flip
          bytes[pick(bytes.size())] ^= static_cast<char>(1 << rng.integer(0, 7));
          break;
        case 2: {  // make a number (often a count) much larger
          const std::size_t at = pick(bytes.size());
          bytes.insert(at, std::string(static_cast<std::size_t>(rng.integer(1, 12)), '9'));
          break;
        }
        default:  // mutate and truncate
          bytes[pick(bytes.size())] = static_cast<char>(rng.integer(0, 255));
          bytes.resize(pick(bytes.size() + 1));
          break;
      }
      write_file(dir / s.name, bytes);
      expect_ok_or_io_error([&] { lattice::io::read_point_cloud(dir / s.name); },
                            s.name + " mutation " + std::to_string(iter));
    }
  }
}
