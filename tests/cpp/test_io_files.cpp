// Point-cloud file readers on the real files under ../shared/data, and
// malformed input (truncation at every length, random byte mutations), which
// must raise IoError -- never crash, hang or allocate absurdly.
#include "support/io_samples.hpp"

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
