// Synthetic point-cloud files of every format and encoding, and the checks the
// reader tests share (test_io.cpp, test_io_files.cpp). Test-only: everything is
// in an anonymous namespace, one copy per test file.
#pragma once

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
