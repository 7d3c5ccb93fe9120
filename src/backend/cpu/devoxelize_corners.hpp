// The point -> voxel geometry of devoxelize (SPEC §8, Appendix A "Points and
// voxels"), shared by the forward (points_cpu.cpp) and its VJP
// (pooling_grad_cpu.cpp) so that both see the same voxels and bit-identical
// weights. u = (p - origin) / (stride * voxel_size) in the points' precision
// P (voxelize's rule; built without fast-math or contraction). nearest: the
// voxel floor(u). linear: the 8 centres around u - 0.5 (taken in double,
// exactly), weights in W (float32, or float64 for float64 points).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "backend/cpu/coord_hash.hpp"
#include "lattice/ops/voxelize.hpp"

namespace lattice::cpu::devoxel {

// Logical cells beyond this are outside every key range: treated as absent
// (and never converted to an integer out of range).
constexpr double k_cell_limit = 1 << 20;

template <class P>
using weight_t = std::conditional_t<std::is_same_v<P, double>, double, float>;

template <class P>
struct AxisParams {
  P origin[3];
  P denom[3];  // stride * voxel_size, rounded once in P (as voxelize)
};

template <class P>
AxisParams<P> axis_params(const ops::DevoxelizeParams& params, Int3 stride) {
  AxisParams<P> ap{};
  for (int a = 0; a < 3; ++a) {
    ap.origin[a] = static_cast<P>(params.origin[a]);
    ap.denom[a] = static_cast<P>(stride[a]) * static_cast<P>(params.voxel_size[a]);
  }
  return ap;
}

// The row of the voxel containing point p (3 coordinates), or -1.
template <class P>
std::int32_t nearest_row(const CoordHashTable& table, const P* p, std::int64_t b, const AxisParams<P>& ap) {
  std::int64_t cell[3];
  for (int a = 0; a < 3; ++a) {
    const P f = std::floor((p[a] - ap.origin[a]) / ap.denom[a]);
    if (!(std::abs(static_cast<double>(f)) < k_cell_limit)) return -1;
    cell[a] = static_cast<std::int64_t>(f);
  }
  return lookup(table, b, cell[0], cell[1], cell[2]);
}

// The 8 corners of point p in a fixed order (z fastest): rows (-1 absent) and
// weights (0 where absent); returns their sum.
template <class P>
weight_t<P> linear_corners(const CoordHashTable& table, const P* p, std::int64_t b, const AxisParams<P>& ap,
                           std::int32_t rows[8], weight_t<P> weights[8]) {
  using W = weight_t<P>;
  std::int64_t lo[3];
  W w_lo[3], w_hi[3];
  bool inside = true;
  for (int a = 0; a < 3; ++a) {
    // u in P, then u - 0.5 exactly, in double: in float32 the subtraction can
    // round across an integer and pick other corners.
    const double t = static_cast<double>((p[a] - ap.origin[a]) / ap.denom[a]) - 0.5;
    const double f = std::floor(t);
    inside = inside && std::abs(f) < k_cell_limit;
    lo[a] = inside ? static_cast<std::int64_t>(f) : 0;
    // Both weights straight from t (one rounding each): 1 - (t - f) would
    // round a tiny lower weight to 0 when t is just below an integer.
    w_lo[a] = static_cast<W>((f + 1) - t);
    w_hi[a] = static_cast<W>(t - f);
  }
  W total = 0;
  for (int k = 0; k < 8; ++k) {
    const int d[3] = {(k >> 2) & 1, (k >> 1) & 1, k & 1};
    rows[k] = inside ? lookup(table, b, lo[0] + d[0], lo[1] + d[1], lo[2] + d[2]) : -1;
    W w = 1;
    for (int a = 0; a < 3; ++a) w *= d[a] ? w_hi[a] : w_lo[a];
    weights[k] = rows[k] >= 0 ? w : W(0);
    total += weights[k];
  }
  return total;
}

}  // namespace lattice::cpu::devoxel
