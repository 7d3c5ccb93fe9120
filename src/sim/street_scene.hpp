// The procedural street the simulated LiDAR scans: a straight road along x
// with cross streets, curbs, sidewalks, lots with buildings, yards and
// vegetation, parked and driving cars, street furniture and people.
// Internal to src/sim.
//
// Frame: the first sweep's sensor frame (x along the street, y left, z up);
// the road surface is the plane z = road_z. Side 0 of the street is y < 0
// (right of the driving direction), side 1 is y > 0.
#pragma once

#include <cstdint>
#include <vector>

#include "sim/scene_geometry.hpp"

namespace lattice::sim::detail {

// The street's cross-section, constant along x.
struct StreetLayout {
  double road_z = 0;  // road surface height
  int lanes = 2;      // travel lanes, lane 0 at the lowest y
  int ego_lane = 0;   // the sensor drives along y = 0, the centre of this lane
  double lane_width = 3.5;
  double lanes_y0 = 0;           // y of lane 0's outer edge
  double parking_width[2] = {};  // parking lane between travel lanes and curb; 0: none
  double edge_y[2] = {};         // curb lines
  double curb[2] = {};           // curb heights above the road
  double sidewalk_width[2] = {};
  double dash_length = 3, dash_period = 9, dash_phase = 0;  // dashed lane lines
};

// A cross street: x in [x0, x1], present on side 0 and/or side 1 (T-junctions).
struct Crossing {
  double x0 = 0, x1 = 0;
  bool side[2] = {true, true};
};

struct Scene {
  StreetLayout layout;
  TerrainField terrain;
  std::vector<Crossing> crossings;  // sorted by x
  std::vector<Primitive> prims;

  // Uniform grid over (x, y) for ray traversal. Cell (i, j) (i along x) lists
  // in cell_items[cell_begin[c] .. cell_begin[c + 1]) the primitives whose xy
  // bounds touch it, c = j * grid_nx + i. Rays leaving the grid see only the
  // road plane.
  double grid_x0 = 0, grid_y0 = 0, cell_size = 2.0;
  int grid_nx = 0, grid_ny = 0;
  std::vector<std::uint32_t> cell_begin;
  std::vector<std::uint32_t> cell_items;

  // Label of the road plane (the fallback surface under every solid) at (x, y):
  // road on the street and in cross streets, terrain elsewhere.
  SceneClass ground_label(double x, double y) const;
  // Whether a road point lies on a painted lane line.
  bool on_lane_marking(double x, double y) const;
};

// Builds the street for sensor positions x in [x_first, x_last] (y = 0), with
// everything within `margin` metres of them. Deterministic in `seed`; the part
// of the street around a given x does not depend on x_last (longer runs extend
// the same street).
Scene build_street_scene(std::uint64_t seed, double road_z, double x_first, double x_last, double margin);

}  // namespace lattice::sim::detail
