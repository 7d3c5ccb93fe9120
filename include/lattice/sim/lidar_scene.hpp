// A simulated spinning 64-beam LiDAR (HDL-64E-like) scanning a procedurally
// generated street scene. The built-in default input of `lattice demo`, and
// the generator for tests and large-scale runs. Deterministic by seed.
#pragma once

#include <cstdint>

#include "lattice/io/point_cloud.hpp"

namespace lattice::sim {

// Classes carry SemanticKITTI raw label ids so models trained on simulated
// scans can be evaluated on real ones.
enum class SceneClass : std::uint32_t {
  unlabeled = 0,
  car = 10,
  person = 30,
  road = 40,
  sidewalk = 48,
  building = 50,
  fence = 51,
  vegetation = 70,
  trunk = 71,
  terrain = 72,
  pole = 80,
  traffic_sign = 81,
};

struct LidarSceneOptions {
  std::uint64_t seed = 0;
  // Sensor: 64 beams from +2.0 deg to -24.9 deg elevation (HDL-64E), 10 Hz.
  int beams = 64;
  // Horizontal samples per revolution (HDL-64E at 10 Hz: about 2,000).
  int azimuth_steps = 2000;
  double min_range = 1.0;       // metres; closer returns are dropped
  double max_range = 120.0;     // metres; farther returns are dropped
  double range_noise = 0.02;    // metres, standard deviation of Gaussian range noise
  double dropout = 0.02;        // probability that a return is lost
  double sensor_height = 1.73;  // metres above the road (KITTI)
  // Sweeps aggregated along the street (sensor moves `sweep_spacing` m in x
  // between sweeps); points are in the first sweep's sensor frame.
  int sweeps = 1;
  double sweep_spacing = 5.0;
};

// Points (N, 3) float32 in the sensor frame (x forward, y left, z up),
// field "remission" in [0, 1], labels (N,) uint32 SceneClass ids, all on the
// CPU. Points come sweep by sweep, each in firing order: azimuth steps
// clockwise from behind the sensor, beams top to bottom within a step. The
// result is a pure function of the options, bit-identical for any thread
// count; a run with more sweeps extends the same street (its first sweep
// equals the one-sweep scan). Throws ValueError for an invalid option.
io::PointCloud simulate_lidar_scan(const LidarSceneOptions& options = {});

}  // namespace lattice::sim
