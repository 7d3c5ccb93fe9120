// CPU voxelization. Voxel cells are computed in the points' own precision
// with IEEE division (the library is built with -ffp-contract=off and without
// fast-math), in parallel; rows are then numbered in first-seen order by one
// serial pass over the points.
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/coord_hash.hpp"
#include "backend/cpu/dispatch.hpp"

namespace lattice::cpu {

namespace {

constexpr const char* k_op = "voxelize";

template <class P>
void voxel_cells(const P* pts, std::int64_t n, const ops::VoxelizeParams& params, std::vector<std::int32_t>& cells) {
  P origin[3], denom[3];
  for (int a = 0; a < 3; ++a) {
    origin[a] = static_cast<P>(params.origin[a]);
    // s * voxel_size, rounded once in the points' precision (SPEC Appendix A).
    denom[a] = static_cast<P>(params.stride[a]) * static_cast<P>(params.voxel_size[a]);
  }
  cells.resize(static_cast<std::size_t>(3 * n));
  std::int64_t bad_row = -1;
#pragma omp parallel for schedule(static) reduction(max : bad_row)
  for (std::int64_t i = 0; i < n; ++i) {
    for (int a = 0; a < 3; ++a) {
      const P p = pts[3 * i + a];
      const P q = (p - origin[a]) / denom[a];
      const P f = std::floor(q);
      if (!std::isfinite(p) || !(f >= static_cast<P>(detail::k_axis_min) && f <= static_cast<P>(detail::k_axis_max))) {
        bad_row = std::max(bad_row, i);
        cells[static_cast<std::size_t>(3 * i + a)] = 0;
      } else {
        cells[static_cast<std::size_t>(3 * i + a)] = static_cast<std::int32_t>(f);
      }
    }
  }
  if (bad_row >= 0) {
    // Report the first offending point (rescan serially; the error path only).
    for (std::int64_t i = 0; i < n; ++i) {
      for (int a = 0; a < 3; ++a) {
        const P p = pts[3 * i + a];
        const P f = std::floor((p - origin[a]) / denom[a]);
        check(std::isfinite(p), k_op, "points", "point ", i, " has a non-finite coordinate ", p, " on axis ", "xyz"[a]);
        check(f >= static_cast<P>(detail::k_axis_min) && f <= static_cast<P>(detail::k_axis_max), k_op, "points",
              "point ", i, " (", pts[3 * i], ", ", pts[3 * i + 1], ", ", pts[3 * i + 2], ") falls in voxel cell ", f,
              " on axis ", "xyz"[a], ", outside the key range [", detail::k_axis_min, ", ", detail::k_axis_max,
              "]; use a larger voxel_size or move the origin");
      }
    }
  }
}

template <class T>
void reduce_features(const Array& feats, const std::vector<std::int32_t>& inverse, std::int64_t m,
                     const std::vector<std::int32_t>& counts, ops::Reduction reduction, Array& out) {
  using A = compute_t<T>;
  const std::int64_t n = feats.dim(0);
  const std::int64_t c = feats.dim(1);
  const T* x = feats.data<T>();
  std::vector<A> acc(static_cast<std::size_t>(m * c),
                     reduction == ops::Reduction::max ? -std::numeric_limits<A>::infinity() : A{0});
  // Serial over points: voxels gather from scattered points, and the order of
  // additions stays fixed (deterministic sums).
  for (std::int64_t i = 0; i < n; ++i) {
    A* dst = acc.data() + std::int64_t{inverse[static_cast<std::size_t>(i)]} * c;
    const T* src = x + i * c;
    if (reduction == ops::Reduction::max) {
      for (std::int64_t j = 0; j < c; ++j) dst[j] = std::max(dst[j], static_cast<A>(load(src[j])));
    } else {
      for (std::int64_t j = 0; j < c; ++j) dst[j] += static_cast<A>(load(src[j]));
    }
  }
  T* y = out.data<T>();
  for (std::int64_t v = 0; v < m; ++v) {
    const A scale =
        reduction == ops::Reduction::mean ? A{1} / static_cast<A>(counts[static_cast<std::size_t>(v)]) : A{1};
    for (std::int64_t j = 0; j < c; ++j) {
      const A value = acc[static_cast<std::size_t>(v * c + j)];
      y[v * c + j] = store<T>(reduction == ops::Reduction::mean ? value * scale : value);
    }
  }
}

}  // namespace

VoxelizeResult voxelize(const Array& points, const std::optional<Array>& feats,
                        const std::optional<Array>& batch_indices, const ops::VoxelizeParams& params) {
  const std::int64_t n = points.dim(0);
  std::vector<std::int32_t> cells;
  if (points.dtype() == DType::f32) {
    voxel_cells(points.data<float>(), n, params, cells);
  } else {
    voxel_cells(points.data<double>(), n, params, cells);
  }
  const std::int32_t* batch = batch_indices ? batch_indices->data<std::int32_t>() : nullptr;

  CoordHashTable table(std::min<std::int64_t>(n, 1 << 20));
  std::vector<std::int32_t> inverse(static_cast<std::size_t>(n));
  std::vector<std::int32_t> coords;
  std::vector<std::int32_t> counts;
  std::vector<std::int32_t> batch_counts;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t b = batch ? batch[i] : 0;
    const std::int32_t* cell = cells.data() + 3 * i;
    const auto next = static_cast<std::int32_t>(counts.size());
    auto [row, inserted] = table.insert(detail::pack_key(b, cell[0], cell[1], cell[2]), next);
    if (inserted) {
      coords.insert(coords.end(), {b, cell[0] * params.stride.x, cell[1] * params.stride.y, cell[2] * params.stride.z});
      counts.push_back(0);
      if (static_cast<std::size_t>(b) >= batch_counts.size()) batch_counts.resize(static_cast<std::size_t>(b) + 1, 0);
      ++batch_counts[static_cast<std::size_t>(b)];
    }
    ++counts[static_cast<std::size_t>(row)];
    inverse[static_cast<std::size_t>(i)] = row;
  }
  const auto m = static_cast<std::int64_t>(counts.size());

  VoxelizeResult r;
  r.coords = Array::from_vector(coords, Shape{m, 4}, Device::cpu());
  r.counts = Array::from_vector(counts, Shape{m}, Device::cpu());
  r.inverse_rows = Array::from_vector(inverse, Shape{n}, Device::cpu());
  r.batch_counts =
      Array::from_vector(batch_counts, Shape{static_cast<std::int64_t>(batch_counts.size())}, Device::cpu());
  if (feats) {
    r.feats = Array::empty(Shape{m, feats->dim(1)}, feats->dtype(), Device::cpu());
    visit_float(feats->dtype(),
                [&]<class T>() { reduce_features<T>(*feats, inverse, m, counts, params.reduction, r.feats); });
  } else {
    r.feats = Array::empty(Shape{m, 0}, DType::f32, Device::cpu());
  }
  return r;
}

}  // namespace lattice::cpu
