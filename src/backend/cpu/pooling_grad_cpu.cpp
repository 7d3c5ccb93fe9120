// CPU VJPs of pooling, resampling and the point <-> voxel ops (SPEC §13).
//
// Every gradient is a gather in a fixed order, the order the CUDA backend
// uses too: relation pooling walks each input row's edges in the input CSR
// (edge id order); trilinear walks each coarse row's candidate fine rows
// (x, then y, then z, ascending); devoxelize and voxelize visit each voxel's
// points in point order (then corner order). Arithmetic is in the compute
// type (float32 for 16-bit features, float64 for float64).
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/coord_hash.hpp"
#include "backend/cpu/devoxelize_corners.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/trilinear_axis.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cpu {

namespace {

// The forward's max winner of one (output, channel) over edges [begin, end):
// lowest input row among equal maxima; if any input is NaN (the forward then
// yields NaN), the lowest NaN row takes the gradient (NaN counts as the max).
template <class T>
std::int32_t argmax_edges(const T* x, std::int64_t c, std::int64_t j, const std::int32_t* in_rows, std::int32_t begin,
                          std::int32_t end) {
  using A = compute_t<T>;
  std::int32_t best = -1, nan_row = -1;
  A best_v = A{0};
  for (std::int32_t e = begin; e < end; ++e) {
    const std::int32_t i = in_rows[e];
    const A v = load(x[std::int64_t{i} * c + j]);
    if (std::isnan(v)) {
      if (nan_row < 0 || i < nan_row) nan_row = i;
    } else if (best < 0 || v > best_v || (v == best_v && i < best)) {
      best_v = v;
      best = i;
    }
  }
  return nan_row >= 0 ? nan_row : best;
}

template <class T>
void pool_backward_typed(const Relation& rel, const Array& feats, const Array& dy, ops::PoolMode mode, Array& dx) {
  using A = compute_t<T>;
  const std::int64_t n_out = rel.output()->rows();
  const std::int64_t n_in = feats.dim(0);
  const std::int64_t c = feats.dim(1);
  const T* x = feats.data<T>();
  const T* g = dy.data<T>();
  T* out = dx.data<T>();
  const std::int32_t* out_offsets = rel.output_csr().row_offsets.data<std::int32_t>();
  const InputCsr& icsr = rel.input_csr();
  const std::int32_t* in_offsets = icsr.offsets.data<std::int32_t>();
  const std::int32_t* edge_ids = icsr.edge_ids.data<std::int32_t>();
  const std::int32_t* in_rows = rel.in_rows().data<std::int32_t>();
  const std::int32_t* out_rows = rel.out_rows().data<std::int32_t>();
  std::vector<std::int32_t> winner;
  if (mode == ops::PoolMode::max) {
    winner.resize(static_cast<std::size_t>(n_out * c));
#pragma omp parallel for schedule(dynamic, 256)
    for (std::int64_t o = 0; o < n_out; ++o) {
      for (std::int64_t j = 0; j < c; ++j) {
        winner[static_cast<std::size_t>(o * c + j)] =
            argmax_edges(x, c, j, in_rows, out_offsets[o], out_offsets[o + 1]);
      }
    }
  }
#pragma omp parallel for schedule(dynamic, 256)
  for (std::int64_t i = 0; i < n_in; ++i) {
    for (std::int64_t j = 0; j < c; ++j) {
      A acc = A{0};
      for (std::int32_t q = in_offsets[i]; q < in_offsets[i + 1]; ++q) {
        const std::int32_t e = edge_ids[q];
        const std::int64_t o = out_rows[e];
        const A v = load(g[o * c + j]);
        if (mode == ops::PoolMode::sum) {
          acc += v;
        } else if (mode == ops::PoolMode::avg) {
          acc += v / static_cast<A>(out_offsets[o + 1] - out_offsets[o]);
        } else if (winner[static_cast<std::size_t>(o * c + j)] == i) {
          acc += v;
        }
      }
      out[i * c + j] = store<T>(acc);
    }
  }
}

template <class T>
void global_backward_typed(const Array& coords, std::int64_t rows, const Array& feats, const Array& dy,
                           ops::PoolMode mode, Array& dx) {
  using A = compute_t<T>;
  const std::int64_t b_count = dy.dim(0), c = dy.dim(1);
  const std::int32_t* co = coords.data<std::int32_t>();
  const T* x = feats.data<T>();
  const T* g = dy.data<T>();
  T* out = dx.data<T>();
  std::vector<std::int64_t> count(static_cast<std::size_t>(b_count), 0);
  for (std::int64_t r = 0; r < rows; ++r) ++count[static_cast<std::size_t>(co[4 * r])];
  // max: the forward's winner per (b, j) -- first row in row order at the max
  // (strict >), or the first NaN row when the item holds a NaN.
  std::vector<std::int64_t> winner, nan_row;
  if (mode == ops::PoolMode::max) {
    winner.assign(static_cast<std::size_t>(b_count * c), -1);
    nan_row.assign(static_cast<std::size_t>(b_count * c), -1);
    std::vector<A> best(static_cast<std::size_t>(b_count * c), A{0});
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t b = co[4 * r];
      for (std::int64_t j = 0; j < c; ++j) {
        const auto s = static_cast<std::size_t>(b * c + j);
        const A v = load(x[r * c + j]);
        if (std::isnan(v)) {
          if (nan_row[s] < 0) nan_row[s] = r;
        } else if (winner[s] < 0 || v > best[s]) {
          best[s] = v;
          winner[s] = r;
        }
      }
    }
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t b = co[4 * r];
    for (std::int64_t j = 0; j < c; ++j) {
      const auto s = static_cast<std::size_t>(b * c + j);
      const A v = load(g[b * c + j]);
      A d = A{0};
      if (mode == ops::PoolMode::sum) {
        d = v;
      } else if (mode == ops::PoolMode::avg) {
        d = v / static_cast<A>(count[static_cast<std::size_t>(b)]);
      } else if ((nan_row[s] >= 0 ? nan_row[s] : winner[s]) == r) {
        d = v;
      }
      out[r * c + j] = store<T>(d);
    }
  }
  std::fill(out + rows * c, out + dx.dim(0) * c, store<T>(0.0f));
}

// The forward's normaliser W(f) and the weight of coarse (ux, uy, uz) in it,
// summed in the forward's order (x, then y, then z candidate).
template <class A>
A fine_weights(const CoordHashTable& coarse, std::int64_t b, const std::int64_t f[3], Int3 ratio,
               const std::int64_t u_self[3], A* w_self) {
  std::int64_t ux[2], uy[2], uz[2];
  A wx[2], wy[2], wz[2];
  const int nx = axis_candidates<A>(f[0], ratio.x, ux, wx);
  const int ny = axis_candidates<A>(f[1], ratio.y, uy, wy);
  const int nz = axis_candidates<A>(f[2], ratio.z, uz, wz);
  A total = A{0};
  *w_self = A{0};
  for (int a = 0; a < nx; ++a) {
    for (int bb = 0; bb < ny; ++bb) {
      for (int d = 0; d < nz; ++d) {
        if (lookup(coarse, b, ux[a], uy[bb], uz[d]) < 0) continue;
        const A w = wx[a] * wy[bb] * wz[d];
        total += w;
        if (ux[a] == u_self[0] && uy[bb] == u_self[1] && uz[d] == u_self[2]) *w_self = w;
      }
    }
  }
  return total;
}

template <class T>
void upsample_backward_typed(const CoordinateSet& coarse, const CoordinateSet& fine, const Array& dy, Int3 ratio,
                             Array& dx, const char* op) {
  using A = compute_t<T>;
  const CoordHashTable& ctable = coord_index(coarse, op);
  const CoordHashTable& ftable = coord_index(fine, op);
  const std::int64_t n_coarse = coarse.rows();
  const std::int64_t c = dy.dim(1);
  const std::int32_t* cc = coarse.coords().data<std::int32_t>();
  const Int3 cs = coarse.stride();
  const T* g = dy.data<T>();
  T* out = dx.data<T>();
#pragma omp parallel
  {
    std::vector<A> acc(static_cast<std::size_t>(c));
#pragma omp for schedule(dynamic, 64)
    for (std::int64_t row = 0; row < n_coarse; ++row) {
      const std::int32_t* u = cc + 4 * row;
      const std::int64_t ul[3] = {u[1] / cs.x, u[2] / cs.y, u[3] / cs.z};
      std::fill(acc.begin(), acc.end(), A{0});
      // Fine f reaches u when |f_a - u_a r_a| < r_a: f_a in u_a r_a + (-r_a, r_a).
      for (std::int64_t dxo = 1 - ratio.x; dxo < ratio.x; ++dxo) {
        for (std::int64_t dyo = 1 - ratio.y; dyo < ratio.y; ++dyo) {
          for (std::int64_t dzo = 1 - ratio.z; dzo < ratio.z; ++dzo) {
            const std::int64_t f[3] = {ul[0] * ratio.x + dxo, ul[1] * ratio.y + dyo, ul[2] * ratio.z + dzo};
            const std::int32_t fr = lookup(ftable, u[0], f[0], f[1], f[2]);
            if (fr < 0) continue;
            A w = A{0};
            const A total = fine_weights<A>(ctable, u[0], f, ratio, ul, &w);
            if (!(total > A{0})) continue;
            const T* gf = g + std::int64_t{fr} * c;
            for (std::int64_t j = 0; j < c; ++j) acc[static_cast<std::size_t>(j)] += w * load(gf[j]) / total;
          }
        }
      }
      T* o = out + row * c;
      for (std::int64_t j = 0; j < c; ++j) o[j] = store<T>(acc[static_cast<std::size_t>(j)]);
    }
  }
  std::fill(out + n_coarse * c, out + dx.dim(0) * c, store<T>(0.0f));
}

// ---- devoxelize: the forward's corners and weights (points_cpu.cpp), bit for bit.

// Up to 8 (voxel row, coefficient) pairs of one point, in corner order (z
// fastest); coefficient = w_k / total in the compute type A, so that
// dx[row_k] += coef_k * dy[point]. Same geometry as the forward.
template <class A, class P>
int point_corners(const CoordHashTable* table, const P* p, const std::int32_t* map, const std::int32_t* batch,
                  std::int64_t i, const devoxel::AxisParams<P>& ap, bool linear, std::int32_t rows[8], A coef[8]) {
  using W = devoxel::weight_t<P>;
  const std::int64_t b = batch != nullptr ? batch[i] : 0;
  if (!linear) {
    const std::int32_t row = map != nullptr ? map[i] : devoxel::nearest_row(*table, p + 3 * i, b, ap);
    if (row < 0) return 0;
    rows[0] = row;
    coef[0] = A{1};
    return 1;
  }
  std::int32_t r8[8];
  W w8[8];
  const W total = devoxel::linear_corners(*table, p + 3 * i, b, ap, r8, w8);
  if (!(total > W(0))) return 0;
  int n = 0;
  for (int k = 0; k < 8; ++k) {
    if (r8[k] < 0) continue;
    rows[n] = r8[k];
    coef[n] = static_cast<A>(w8[k]) / static_cast<A>(total);
    ++n;
  }
  return n;
}

template <class T, class P>
void devoxelize_backward_typed(const CoordinateSet& set, const P* pts, const Array& dy, const std::int32_t* map,
                               const std::int32_t* batch, const ops::DevoxelizeParams& params, Array& dx) {
  using A = compute_t<T>;
  const bool linear = params.interpolation == ops::Interpolation::linear;
  const CoordHashTable* table = (linear || map == nullptr) ? &coord_index(set, "devoxelize_backward") : nullptr;
  const devoxel::AxisParams<P> ap = devoxel::axis_params<P>(params, set.stride());
  const std::int64_t n = dy.dim(0), c = dy.dim(1), m = dx.dim(0);
  const T* g = dy.data<T>();
  // Serial over points: each voxel receives its points' terms in point order,
  // then corner order (the CUDA backend sorts (voxel, point, corner) stably).
  std::vector<A> acc(static_cast<std::size_t>(m * c), A{0});
  for (std::int64_t i = 0; i < n; ++i) {
    std::int32_t rows[8];
    A coef[8];
    const int k = point_corners<A, P>(table, pts, map, batch, i, ap, linear, rows, coef);
    for (int q = 0; q < k; ++q) {
      A* dst = acc.data() + std::int64_t{rows[q]} * c;
      for (std::int64_t j = 0; j < c; ++j) dst[j] += coef[q] * load(g[i * c + j]);
    }
  }
  T* out = dx.data<T>();
  for (std::int64_t e = 0; e < m * c; ++e) out[e] = store<T>(acc[static_cast<std::size_t>(e)]);
}

template <class T>
void voxelize_backward_typed(const Array& inverse_rows, const Array& counts, const Array& feats, const Array& dy,
                             ops::Reduction reduction, Array& dfeats) {
  using A = compute_t<T>;
  const std::int64_t n = feats.dim(0), c = feats.dim(1), m = counts.dim(0);
  const std::int32_t* inv = inverse_rows.data<std::int32_t>();
  const std::int32_t* cnt = counts.data<std::int32_t>();
  const T* x = feats.data<T>();
  const T* g = dy.data<T>();
  T* out = dfeats.data<T>();
  // max: the forward keeps the first point at the running maximum (strict
  // std::max, NaN inputs never win); the gradient goes to that point.
  std::vector<std::int64_t> winner;
  if (reduction == ops::Reduction::max) {
    winner.assign(static_cast<std::size_t>(m * c), -1);
    std::vector<A> best(static_cast<std::size_t>(m * c), -std::numeric_limits<A>::infinity());
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t v = inv[i];
      for (std::int64_t j = 0; j < c; ++j) {
        const auto s = static_cast<std::size_t>(v * c + j);
        const A value = load(x[i * c + j]);
        if (best[s] < value || (winner[s] < 0 && value == best[s])) {
          best[s] = value;
          winner[s] = i;
        }
      }
    }
  }
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t v = inv[i];
    for (std::int64_t j = 0; j < c; ++j) {
      const A d = load(g[v * c + j]);
      A r = d;
      if (reduction == ops::Reduction::mean) {
        r = d * (A{1} / static_cast<A>(cnt[v]));
      } else if (reduction == ops::Reduction::max) {
        r = winner[static_cast<std::size_t>(v * c + j)] == i ? d : A{0};
      }
      out[i * c + j] = store<T>(r);
    }
  }
}

}  // namespace

void pool_backward(const Relation& rel, const Array& feats, const Array& dy, ops::PoolMode mode, Array& dx) {
  visit_float(feats.dtype(), [&]<class T>() { pool_backward_typed<T>(rel, feats, dy, mode, dx); });
}

void global_pool_backward(const Array& coords, std::int64_t rows, const Array& feats, const Array& dy,
                          ops::PoolMode mode, Array& dx) {
  visit_float(feats.dtype(), [&]<class T>() { global_backward_typed<T>(coords, rows, feats, dy, mode, dx); });
}

void trilinear_upsample_backward(const CoordinateSet& coarse, const CoordinateSet& fine, const Array& dy, Int3 ratio,
                                 Array& dx, const char* op) {
  visit_float(dy.dtype(), [&]<class T>() { upsample_backward_typed<T>(coarse, fine, dy, ratio, dx, op); });
}

void devoxelize_backward(const CoordinateSet& set, const Array& points, const Array& dy,
                         const std::optional<Array>& map, const std::optional<Array>& batch_indices,
                         const ops::DevoxelizeParams& params, Array& dx) {
  const std::int32_t* map_ptr = map ? map->data<std::int32_t>() : nullptr;
  const std::int32_t* batch = batch_indices ? batch_indices->data<std::int32_t>() : nullptr;
  visit_float(dy.dtype(), [&]<class T>() {
    if (points.dtype() == DType::f32) {
      devoxelize_backward_typed<T, float>(set, points.data<float>(), dy, map_ptr, batch, params, dx);
    } else {
      devoxelize_backward_typed<T, double>(set, points.data<double>(), dy, map_ptr, batch, params, dx);
    }
  });
}

void voxelize_backward(const Array& inverse_rows, const Array& counts, const Array& feats, const Array& dy,
                       ops::Reduction reduction, Array& dfeats) {
  visit_float(feats.dtype(),
              [&]<class T>() { voxelize_backward_typed<T>(inverse_rows, counts, feats, dy, reduction, dfeats); });
}

}  // namespace lattice::cpu
