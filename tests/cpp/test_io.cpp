// Point-cloud file readers on synthetic files: exact values from every format
// and encoding, corrupt headers and bad data, which must raise IoError. Real
// files and truncation / mutation robustness: test_io_files.cpp.
#include "support/io_samples.hpp"

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
