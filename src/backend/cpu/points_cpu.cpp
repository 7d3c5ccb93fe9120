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
#include "backend/cpu/devoxelize_corners.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

namespace {

constexpr const char* k_op = "devoxelize";

using devoxel::axis_params;
using devoxel::AxisParams;

template <class T, class P>
void devoxelize_impl(const CoordHashTable* table, const Array& feats, const P* pts, const std::int32_t* map,
                     const std::int32_t* batch, std::int64_t n, const AxisParams<P>& ap, bool linear, Array& out) {
  using A = compute_t<T>;
  using W = devoxel::weight_t<P>;  // weight precision
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
        row = devoxel::nearest_row(*table, pts + 3 * i, b, ap);
      }
      for (std::int64_t j = 0; j < c; ++j) dst[j] = row >= 0 ? x[std::int64_t{row} * c + j] : store<T>(0.0f);
      continue;
    }
    // linear: centres sit at L + 0.5, so the lower corner is floor(u - 0.5).
    std::int32_t rows[8];
    W weights[8];
    const W total = devoxel::linear_corners(*table, pts + 3 * i, b, ap, rows, weights);
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
