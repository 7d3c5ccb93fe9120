// The simulated HDL-64E street scan: layout of the output, determinism (seed,
// thread count), sensor geometry, labels, sweeps and argument checks.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lattice/core/error.hpp"
#include "lattice/sim/lidar_scene.hpp"

namespace lattice {
namespace {

using sim::LidarSceneOptions;
using sim::SceneClass;
using sim::simulate_lidar_scan;

constexpr double k_pi = 3.14159265358979323846;
constexpr double k_deg = 180.0 / k_pi;

// The default scan is used by many tests; simulate it once.
const io::PointCloud& default_scan() {
  static const io::PointCloud scan = simulate_lidar_scan();
  return scan;
}

std::vector<float> positions_of(const io::PointCloud& pc) { return pc.positions.to_vector<float>(); }
std::vector<float> remission_of(const io::PointCloud& pc) { return pc.fields.at(0).second.to_vector<float>(); }
std::vector<std::uint32_t> labels_of(const io::PointCloud& pc) { return pc.labels->to_vector<std::uint32_t>(); }

bool same_bytes(const Array& a, const Array& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Byte-identical positions, remission and labels.
bool identical(const io::PointCloud& a, const io::PointCloud& b) {
  return same_bytes(a.positions, b.positions) && same_bytes(a.fields.at(0).second, b.fields.at(0).second) &&
         same_bytes(*a.labels, *b.labels);
}

std::map<std::uint32_t, std::int64_t> class_counts(const io::PointCloud& pc) {
  std::map<std::uint32_t, std::int64_t> counts;
  for (std::uint32_t l : labels_of(pc)) ++counts[l];
  return counts;
}

std::uint32_t id(SceneClass c) { return static_cast<std::uint32_t>(c); }

// The documented HDL-64E layout: 32 lasers from +2.0 to -8.33 deg, 32 from -8.83 to -24.9 deg.
std::vector<double> hdl64_elevations_deg() {
  std::vector<double> out;
  out.reserve(64);
  for (int i = 0; i < 32; ++i) out.push_back(2.0 + (-8.33 - 2.0) * i / 31.0);
  for (int i = 0; i < 32; ++i) out.push_back(-8.83 + (-24.9 + 8.83) * i / 31.0);
  return out;
}

TEST(SimLidar, OutputHasDocumentedShapesAndTypes) {
  const io::PointCloud& pc = default_scan();
  const std::int64_t n = pc.size();
  ASSERT_GT(n, 0);
  EXPECT_EQ(pc.positions.shape(), (Shape{n, 3}));
  EXPECT_EQ(pc.positions.dtype(), DType::f32);
  EXPECT_TRUE(pc.positions.device() == Device::cpu());
  ASSERT_EQ(pc.fields.size(), 1u);
  EXPECT_EQ(pc.fields[0].first, "remission");
  EXPECT_EQ(pc.fields[0].second.shape(), (Shape{n}));
  EXPECT_EQ(pc.fields[0].second.dtype(), DType::f32);
  ASSERT_TRUE(pc.labels.has_value());
  EXPECT_EQ(pc.labels->shape(), (Shape{n}));
  EXPECT_EQ(pc.labels->dtype(), DType::u32);

  for (float r : remission_of(pc)) ASSERT_TRUE(r >= 0.0f && r <= 1.0f) << r;
  for (float v : positions_of(pc)) ASSERT_TRUE(std::isfinite(v));
  const std::vector<std::uint32_t> known = {0, 10, 30, 40, 48, 50, 51, 70, 71, 72, 80, 81};
  for (const auto& [label, count] : class_counts(pc)) {
    EXPECT_NE(std::find(known.begin(), known.end(), label), known.end()) << "unknown label " << label;
    EXPECT_NE(label, 0u) << count << " unlabeled points";
  }
}

TEST(SimLidar, SameSeedGivesByteIdenticalScan) {
  EXPECT_TRUE(identical(simulate_lidar_scan(), default_scan()));
  LidarSceneOptions o;
  o.seed = 12345;
  o.azimuth_steps = 500;
  EXPECT_TRUE(identical(simulate_lidar_scan(o), simulate_lidar_scan(o)));
}

TEST(SimLidar, DifferentSeedsGiveDifferentScans) {
  LidarSceneOptions o;
  o.seed = 1;
  const io::PointCloud other = simulate_lidar_scan(o);
  EXPECT_FALSE(identical(other, default_scan()));
  // Not just different noise: a different street.
  const auto a = class_counts(default_scan()), b = class_counts(other);
  EXPECT_NE(a, b);
}

TEST(SimLidar, ThreadCountDoesNotChangeTheBits) {
#ifdef _OPENMP
  const int previous = omp_get_max_threads();
  LidarSceneOptions o;
  o.sweeps = 2;
  omp_set_num_threads(1);
  const io::PointCloud one = simulate_lidar_scan(o);
  omp_set_num_threads(2);
  const io::PointCloud two = simulate_lidar_scan(o);
  omp_set_num_threads(3);
  const io::PointCloud three = simulate_lidar_scan(o);
  omp_set_num_threads(previous);
  EXPECT_TRUE(identical(one, two));
  EXPECT_TRUE(identical(one, three));
#else
  GTEST_SKIP() << "built without OpenMP";
#endif
}

// 64 x 2000 = 128,000 rays; 2% dropout leaves about 125,400. Rays above the
// horizon that pass between buildings or along the street return nothing, so
// over seeds 0-29 the default street gives 112k-122k points (seed 0: about
// 121.6k); a real SemanticKITTI frame (sequence 00, frame 0) has 123,389.
TEST(SimLidar, DefaultScanSizeIsLikeAnHdl64Frame) {
  const std::int64_t n = default_scan().size();
  EXPECT_GE(n, 100000);
  EXPECT_LE(n, 125440);
}

TEST(SimLidar, RangesAndElevationsFollowTheSensor) {
  const LidarSceneOptions o;
  const std::vector<float> p = positions_of(default_scan());
  const std::vector<double> beams = hdl64_elevations_deg();
  for (std::size_t i = 0; i < p.size(); i += 3) {
    const double x = p[i], y = p[i + 1], z = p[i + 2];
    const double range = std::sqrt(x * x + y * y + z * z);
    ASSERT_GE(range, o.min_range - 1e-4);
    ASSERT_LE(range, o.max_range + 4 * o.range_noise);
    const double elevation = std::asin(z / range) * k_deg;
    ASSERT_GE(elevation, -24.9 - 0.02);
    ASSERT_LE(elevation, 2.0 + 0.02);
    // Range noise acts along the ray: every point lies on one of the 64 cones.
    double nearest = 180.0;
    for (double b : beams) nearest = std::min(nearest, std::fabs(elevation - b));
    ASSERT_LT(nearest, 0.01) << "point " << i / 3 << " at elevation " << elevation;
  }
}

TEST(SimLidar, PointsComeInAzimuthOrder) {
  // Clockwise from behind the sensor; per-laser azimuth offsets are below half a step.
  const LidarSceneOptions o;
  const double step = 2 * k_pi / o.azimuth_steps;
  const std::vector<float> p = positions_of(default_scan());
  double previous = -1;
  for (std::size_t i = 0; i < p.size(); i += 3) {
    double phi =
        k_pi - std::atan2(static_cast<double>(p[i + 1]), static_cast<double>(p[i]));  // 0 behind, growing clockwise
    if (previous > 1.5 * k_pi && phi < 0.5 * k_pi) phi += 2 * k_pi;  // the first column straddles the seam
    if (previous >= 0) {
      ASSERT_GE(phi, previous - 1.01 * step) << "point " << i / 3;
    }
    previous = std::max(previous, phi);
  }
}

TEST(SimLidar, StreetClassesArePresent) {
  const auto counts = class_counts(default_scan());
  for (SceneClass c :
       {SceneClass::road, SceneClass::sidewalk, SceneClass::building, SceneClass::car, SceneClass::vegetation,
        SceneClass::trunk, SceneClass::terrain, SceneClass::pole, SceneClass::person}) {
    const auto it = counts.find(id(c));
    ASSERT_NE(it, counts.end()) << "no points of class " << id(c);
    EXPECT_GE(it->second, 20) << "class " << id(c);
  }
}

TEST(SimLidar, GroundLiesBelowTheSensorAtItsHeight) {
  const LidarSceneOptions o;
  const std::vector<float> p = positions_of(default_scan());
  const std::vector<std::uint32_t> l = labels_of(default_scan());
  std::int64_t low = 0, low_ground = 0, road = 0;
  for (std::size_t i = 0; i < l.size(); ++i) {
    const double z = p[3 * i + 2];
    const bool ground =
        l[i] == id(SceneClass::road) || l[i] == id(SceneClass::sidewalk) || l[i] == id(SceneClass::terrain);
    if (z < -1.5) {
      ++low;
      low_ground += ground ? 1 : 0;
    }
    if (l[i] == id(SceneClass::road)) {
      ++road;
      ASSERT_NEAR(z, -o.sensor_height, 0.1) << "road point " << i;
    }
  }
  ASSERT_GT(low, 0);
  EXPECT_GT(road, 0);
  EXPECT_GT(static_cast<double>(low_ground) / static_cast<double>(low), 0.9);
}

TEST(SimLidar, SensorHeightAndNoiseShapeTheRoad) {
  LidarSceneOptions o;
  o.azimuth_steps = 400;
  o.sensor_height = 2.5;
  o.range_noise = 0.0;
  const io::PointCloud pc = simulate_lidar_scan(o);
  const std::vector<float> p = positions_of(pc);
  const std::vector<std::uint32_t> l = labels_of(pc);
  std::int64_t road = 0;
  for (std::size_t i = 0; i < l.size(); ++i) {
    if (l[i] != id(SceneClass::road)) continue;
    ++road;
    ASSERT_NEAR(p[3 * i + 2], -2.5, 1e-4);  // noise-free: exactly on the plane
  }
  EXPECT_GT(road, 1000);
}

TEST(SimLidar, RemissionDependsOnTheSurface) {
  const std::vector<float> r = remission_of(default_scan());
  const std::vector<std::uint32_t> l = labels_of(default_scan());
  std::map<std::uint32_t, double> sum;
  for (std::size_t i = 0; i < l.size(); ++i) sum[l[i]] += r[i];
  const auto counts = class_counts(default_scan());
  auto mean = [&](SceneClass c) { return sum[id(c)] / static_cast<double>(counts.at(id(c))); };
  EXPECT_GT(mean(SceneClass::road), 0.1);
  EXPECT_LT(mean(SceneClass::road), 0.3);
  EXPECT_GT(mean(SceneClass::vegetation), 0.2);
  EXPECT_LT(mean(SceneClass::vegetation), 0.5);
  EXPECT_GT(mean(SceneClass::terrain), mean(SceneClass::road));
}

TEST(SimLidar, DropoutRemovesThatShareOfReturns) {
  LidarSceneOptions o;
  o.azimuth_steps = 1000;
  o.dropout = 0.0;
  const double full = static_cast<double>(simulate_lidar_scan(o).size());
  o.dropout = 0.5;
  const double half = static_cast<double>(simulate_lidar_scan(o).size());
  EXPECT_NEAR(half / full, 0.5, 0.02);
}

TEST(SimLidar, SweepsAggregateAlongTheStreet) {
  LidarSceneOptions o;
  o.sweeps = 3;
  const io::PointCloud pc = simulate_lidar_scan(o);
  const std::int64_t one = default_scan().size();
  EXPECT_GT(pc.size(), 2.7 * one);
  EXPECT_LT(pc.size(), 3.3 * one);
  // Sweep-major order, and a longer run extends the same street: its first
  // sweep is the single-sweep scan, bit for bit.
  ASSERT_GT(pc.size(), one);
  EXPECT_TRUE(same_bytes(pc.positions.rows(0, one), default_scan().positions));
  EXPECT_TRUE(same_bytes(pc.fields[0].second.rows(0, one), default_scan().fields[0].second));
  EXPECT_TRUE(same_bytes(pc.labels->rows(0, one), *default_scan().labels));
}

TEST(SimLidar, LaterSweepsAreOffsetAlongX) {
  LidarSceneOptions o;
  o.sweeps = 2;
  o.sweep_spacing = 500.0;
  o.azimuth_steps = 500;
  const io::PointCloud pc = simulate_lidar_scan(o);
  const std::vector<float> p = positions_of(pc);
  // Points are in the first sweep's frame: sweep 1 within max_range of x = 0,
  // sweep 2 within max_range of x = 500, and all of sweep 1 comes first.
  std::int64_t first = 0, second = 0;
  bool in_second = false;
  for (std::size_t i = 0; i < p.size(); i += 3) {
    const double x = p[i];
    if (x > 250.0) {
      in_second = true;
      ++second;
      ASSERT_LE(std::fabs(x - 500.0), o.max_range + 1.0);
    } else {
      ASSERT_FALSE(in_second) << "sweep 1 point after sweep 2 began, point " << i / 3;
      ++first;
      ASSERT_LE(std::fabs(x), o.max_range + 1.0);
    }
  }
  EXPECT_GT(first, 20000);
  EXPECT_GT(second, 20000);
}

TEST(SimLidar, LargeRunExceedsAMillionPoints) {
  LidarSceneOptions o;
  o.sweeps = 10;
  const io::PointCloud pc = simulate_lidar_scan(o);
  EXPECT_GT(pc.size(), 1000000);
  const double per_sweep = static_cast<double>(pc.size()) / o.sweeps;
  EXPECT_NEAR(per_sweep / static_cast<double>(default_scan().size()), 1.0, 0.1);
}

// Each invalid value throws ValueError naming the function and the argument.
void expect_rejected(const std::string& arg, const std::function<void(LidarSceneOptions&)>& edit) {
  LidarSceneOptions o;
  edit(o);
  try {
    simulate_lidar_scan(o);
    ADD_FAILURE() << "no error for an invalid '" << arg << "'";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("[simulate_lidar_scan] argument '" + arg + "'"), std::string::npos)
        << e.what();
  }
}

TEST(SimLidar, InvalidOptionsThrowValueError) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  expect_rejected("beams", [](auto& o) { o.beams = 0; });
  expect_rejected("beams", [](auto& o) { o.beams = 129; });
  expect_rejected("azimuth_steps", [](auto& o) { o.azimuth_steps = 0; });
  expect_rejected("azimuth_steps", [](auto& o) { o.azimuth_steps = 100001; });
  expect_rejected("min_range", [](auto& o) { o.min_range = 0.0; });
  expect_rejected("min_range", [&](auto& o) { o.min_range = nan; });
  expect_rejected("max_range", [](auto& o) { o.max_range = 0.5; });  // below min_range
  expect_rejected("max_range", [&](auto& o) { o.max_range = inf; });
  expect_rejected("range_noise", [](auto& o) { o.range_noise = -0.01; });
  expect_rejected("range_noise", [&](auto& o) { o.range_noise = nan; });
  expect_rejected("dropout", [](auto& o) { o.dropout = -0.1; });
  expect_rejected("dropout", [](auto& o) { o.dropout = 1.0; });
  expect_rejected("sensor_height", [](auto& o) { o.sensor_height = 0.0; });
  expect_rejected("sensor_height", [&](auto& o) { o.sensor_height = nan; });
  expect_rejected("sweeps", [](auto& o) { o.sweeps = 0; });
  expect_rejected("sweeps", [](auto& o) { o.sweeps = 1001; });
  expect_rejected("sweep_spacing", [](auto& o) { o.sweep_spacing = -1.0; });
  expect_rejected("sweep_spacing", [&](auto& o) { o.sweep_spacing = inf; });
}

TEST(SimLidar, BoundaryOptionsAreAccepted) {
  LidarSceneOptions o;
  o.beams = 1;
  o.azimuth_steps = 1;
  o.dropout = 0.0;
  o.range_noise = 0.0;
  EXPECT_NO_THROW(simulate_lidar_scan(o));
  o.beams = 128;
  o.azimuth_steps = 64;
  const io::PointCloud pc = simulate_lidar_scan(o);
  EXPECT_GT(pc.size(), 0);
  EXPECT_LE(pc.size(), 128 * 64);
}

}  // namespace
}  // namespace lattice
