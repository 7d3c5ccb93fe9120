// CPU devoxelize (SPEC §8, Appendix A "Points and voxels") and the first point
// of each voxel for voxelize_with_quantization.
//
// Positions are computed in the points' precision with IEEE subtract and
// divide, exactly as voxelize does (the library is built without fast-math and
// with -ffp-contract=off), so nearest picks the very voxel voxelize put the
// point in. Linear takes u - 0.5 and its floor exactly (in double); weights
// are computed in float32 (float64 for float64 points);
// features accumulate in their compute type over the 8 corners in a fixed
// order (z fastest), so the result does not depend on threading.
#include <cmath>
#include <vector>

#include "backend/cpu/api_points.hpp"
#include "backend/cpu/coord_hash.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

namespace {

constexpr const char* k_op = "devoxelize";

// Logical cells beyond this are outside every key range: treated as absent
// (and never converted to an integer out of range).
constexpr double k_cell_limit = 1 << 20;

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

template <class T, class P>
void devoxelize_impl(const CoordHashTable* table, const Array& feats, const P* pts, const std::int32_t* map,
                     const std::int32_t* batch, std::int64_t n, const AxisParams<P>& ap, bool linear, Array& out) {
  using A = compute_t<T>;
  using W = std::conditional_t<std::is_same_v<P, double>, double, float>;  // weight precision
  const std::int64_t c = feats.dim(1);
  const T* x = feats.data<T>();
  T* y = out.data<T>();
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    T* dst = y + i * c;
    const std::int64_t b = batch != nullptr ? batch[i] : 0;
    if (!linear) {
      std::int32_t row = -1;
      if (map != nullptr) {
        row = map[i];
      } else {
        std::int64_t cell[3];
        bool inside = true;
        for (int a = 0; a < 3; ++a) {
          const P f = std::floor((pts[3 * i + a] - ap.origin[a]) / ap.denom[a]);
          inside = inside && std::abs(static_cast<double>(f)) < k_cell_limit;
          cell[a] = inside ? static_cast<std::int64_t>(f) : 0;
        }
        if (inside) row = lookup(*table, b, cell[0], cell[1], cell[2]);
      }
      for (std::int64_t j = 0; j < c; ++j) dst[j] = row >= 0 ? x[std::int64_t{row} * c + j] : store<T>(0.0f);
      continue;
    }
    // linear: centres sit at L + 0.5, so the lower corner is floor(u - 0.5).
    std::int64_t lo[3];
    W w_lo[3], w_hi[3];
    bool inside = true;
    for (int a = 0; a < 3; ++a) {
      // u in P (voxelize's rule), then u - 0.5 exactly, in double: in float32
      // the subtraction can round across an integer and pick other corners.
      const double t = static_cast<double>((pts[3 * i + a] - ap.origin[a]) / ap.denom[a]) - 0.5;
      const double f = std::floor(t);
      inside = inside && std::abs(static_cast<double>(f)) < k_cell_limit;
      lo[a] = inside ? static_cast<std::int64_t>(f) : 0;
      // Both weights straight from t (one rounding each): 1 - (t - f) would
      // round a tiny lower weight to 0 when t is just below an integer.
      w_lo[a] = static_cast<W>((f + 1) - t);
      w_hi[a] = static_cast<W>(t - f);
    }
    std::int32_t rows[8];
    W weights[8];
    W total = 0;
    for (int k = 0; k < 8; ++k) {
      const int d[3] = {(k >> 2) & 1, (k >> 1) & 1, k & 1};
      rows[k] = inside ? lookup(*table, b, lo[0] + d[0], lo[1] + d[1], lo[2] + d[2]) : -1;
      W w = 1;
      for (int a = 0; a < 3; ++a) w *= d[a] ? w_hi[a] : w_lo[a];
      weights[k] = rows[k] >= 0 ? w : W(0);
      total += weights[k];
    }
    for (std::int64_t j = 0; j < c; ++j) {
      A acc = 0;
      if (total > W(0)) {
        for (int k = 0; k < 8; ++k) {
          if (rows[k] >= 0) acc += static_cast<A>(weights[k]) * load(x[std::int64_t{rows[k]} * c + j]);
        }
        acc = acc / static_cast<A>(total);
      }
      dst[j] = store<T>(acc);
    }
  }
}

}  // namespace

void devoxelize(const CoordinateSet& set, const Array& feats, const Array& points, const std::optional<Array>& map,
                const std::optional<Array>& batch_indices, const ops::DevoxelizeParams& params, Array& out) {
  const std::int64_t n = points.dim(0);
  const bool linear = params.interpolation == ops::Interpolation::linear;
  // The index is only needed for lookups (not when the map gives the rows).
  const CoordHashTable* table = (linear || !map) ? &coord_index(set, k_op) : nullptr;
  const std::int32_t* map_ptr = map ? map->data<std::int32_t>() : nullptr;
  const std::int32_t* batch = batch_indices ? batch_indices->data<std::int32_t>() : nullptr;
  visit_float(feats.dtype(), [&]<class T>() {
    if (points.dtype() == DType::f32) {
      devoxelize_impl<T, float>(table, feats, points.data<float>(), map_ptr, batch, n,
                                axis_params<float>(params, set.stride()), linear, out);
    } else {
      devoxelize_impl<T, double>(table, feats, points.data<double>(), map_ptr, batch, n,
                                 axis_params<double>(params, set.stride()), linear, out);
    }
  });
}

Array first_points(const Array& inverse_rows, std::int64_t m) {
  std::vector<std::int32_t> first(static_cast<std::size_t>(m), -1);
  const std::int32_t* inv = inverse_rows.data<std::int32_t>();
  for (std::int64_t i = inverse_rows.dim(0) - 1; i >= 0; --i) {
    if (inv[i] >= 0) first[static_cast<std::size_t>(inv[i])] = static_cast<std::int32_t>(i);
  }
  return Array::from_vector(first, Shape{m}, Device::cpu());
}

}  // namespace lattice::cpu
