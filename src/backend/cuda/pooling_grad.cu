// CUDA VJPs of pooling, resampling and the point <-> voxel ops (semantics:
// backend/cpu/api_pooling_grad.hpp). Every gradient is a gather in the CPU's
// order, with explicitly rounded arithmetic (no FMA contraction), so results
// are deterministic run to run and follow the CPU's evaluation:
//  - relation pooling: a winner pass per (output, channel) for max, then one
//    thread per (input row, channel) walks the input CSR in edge-id order;
//  - global pooling, devoxelize, voxelize(max): (segment key, item) pairs are
//    stably radix-sorted (CUB), each segment is found by binary search and
//    walked in item order by one thread per (segment, channel);
//  - trilinear: one thread per coarse row enumerates the fine rows it reaches
//    through the fine set's hash index, recomputes the forward's weights and
//    normaliser, and accumulates all its channels in a compute-type scratch row.
// Grids are sized by host-known capacities; device counts bound the work; no
// floating-point atomics; nothing waits for the host.
#include <cstdint>
#include <limits>

#include "backend/cuda/api.hpp"
#include "backend/cuda/coord_index.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"
#include "backend/cuda/device/hash.cuh"
#include "backend/cuda/device/rounding.cuh"
#include "backend/cuda/errors.hpp"
#include "backend/cuda/scan.hpp"

namespace lattice::cuda {

namespace {

using device::add_rn;
using device::compute_t;
using device::ConstHashView;
using device::div_rn;
using device::load;
using device::mul_rn;
using device::read_count;
using device::store;
using device::sub_rn;

constexpr int k_threads = 256;
constexpr std::uint32_t k_absent = 0xFFFFFFFFu;  // sort key of entries that belong to no segment
constexpr double k_cell_limit = 1 << 20;         // as the forward devoxelize: farther cells are absent

cudaStream_t prepare(Device device) {
  LATTICE_CUDA_CHECK(cudaSetDevice(device.index));
  return stream_of(device);
}

ConstHashView view_of(const CudaCoordIndex& index) {
  return {reinterpret_cast<const unsigned long long*>(index.keys.raw()), ptr<const std::int32_t>(index.values),
          index.mask()};
}

// First position in sorted keys[0, n) whose key is >= v.
__device__ __forceinline__ std::int64_t lower_bound(const std::uint32_t* keys, std::int64_t n, std::uint32_t v) {
  std::int64_t lo = 0, hi = n;
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (keys[mid] < v) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

template <class T>
__global__ void zero_kernel(T* y, std::int64_t n) {
  LATTICE_GRID_LOOP(i, n) { y[i] = store<T>(0.0f); }
}

template <class T>
void zero(Array& a, cudaStream_t stream) {
  if (a.numel() == 0) return;
  zero_kernel<T><<<grid_for(a.numel(), k_threads), k_threads, 0, stream>>>(ptr<T>(a), a.numel());
  LATTICE_CUDA_LAUNCH_CHECK();
}

// ---- relation pooling ------------------------------------------------------------------

// The forward's max winner per (output, channel): lowest input row among equal
// maxima; an output holding a NaN input routes to its lowest NaN row.
template <class T>
__global__ void winner_kernel(const T* __restrict__ x, const std::int32_t* __restrict__ offsets,
                              const std::int32_t* __restrict__ in_rows, const std::int32_t* out_count, std::int64_t cap,
                              std::int64_t c, std::int32_t* __restrict__ winner) {
  using A = compute_t<T>;
  const std::int64_t n = read_count(out_count, cap);
  LATTICE_GRID_LOOP(idx, n * c) {
    const std::int64_t o = idx / c, j = idx % c;
    std::int32_t best = -1, nan_row = -1;
    A best_v = A(0);
    for (std::int32_t e = offsets[o]; e < offsets[o + 1]; ++e) {
      const std::int32_t i = in_rows[e];
      const A v = load(x[static_cast<std::int64_t>(i) * c + j]);
      if (isnan(v)) {
        if (nan_row < 0 || i < nan_row) nan_row = i;
      } else if (best < 0 || v > best_v || (v == best_v && i < best)) {
        best_v = v;
        best = i;
      }
    }
    winner[idx] = nan_row >= 0 ? nan_row : best;
  }
}

template <class T>
__global__ void pool_gather_kernel(const T* __restrict__ dy, const std::int32_t* __restrict__ in_offsets,
                                   const std::int32_t* __restrict__ edge_ids, const std::int32_t* __restrict__ out_rows,
                                   const std::int32_t* __restrict__ out_offsets,
                                   const std::int32_t* __restrict__ winner, std::int64_t n_in, std::int64_t c, int mode,
                                   T* __restrict__ dx) {
  using A = compute_t<T>;
  LATTICE_GRID_LOOP(idx, n_in * c) {
    const std::int64_t i = idx / c, j = idx % c;
    A acc = A(0);
    for (std::int32_t q = in_offsets[i]; q < in_offsets[i + 1]; ++q) {
      const std::int64_t o = out_rows[edge_ids[q]];
      const A v = load(dy[o * c + j]);
      if (mode == static_cast<int>(ops::PoolMode::sum)) {
        acc = add_rn(acc, v);
      } else if (mode == static_cast<int>(ops::PoolMode::avg)) {
        acc = add_rn(acc, div_rn(v, static_cast<A>(out_offsets[o + 1] - out_offsets[o])));
      } else if (winner[o * c + j] == i) {
        acc = add_rn(acc, v);
      }
    }
    dx[idx] = store<T>(acc);
  }
}

// ---- global pooling ---------------------------------------------------------------------

// Sort keys: the batch id of each active row (rows past the count, and batch
// ids beyond dy's rows -- a sticky error -- sort last).
__global__ void batch_keys_kernel(const std::int32_t* __restrict__ coords, const std::int32_t* rows_ptr,
                                  std::int64_t cap, std::int64_t batches, std::uint32_t* __restrict__ keys,
                                  std::int32_t* __restrict__ items, ErrorSlot* err, int op) {
  const std::int64_t n = read_count(rows_ptr, cap);
  LATTICE_GRID_LOOP(r, cap) {
    std::uint32_t key = k_absent;
    if (r < n) {
      const std::int32_t b = coords[4 * r];
      if (b >= 0 && b < batches) {
        key = static_cast<std::uint32_t>(b);
      } else {
        device::record_error(err, ErrorCode::batch_beyond_size, op, r, b, batches);
      }
    }
    keys[r] = key;
    items[r] = static_cast<std::int32_t>(r);
  }
}

// Per (batch, channel): the forward's max winner over the item's rows in row
// order (first row at the max, strict >; the first NaN row when there is one).
template <class T>
__global__ void global_winner_kernel(const T* __restrict__ x, const std::uint32_t* __restrict__ keys,
                                     const std::int32_t* __restrict__ rows, std::int64_t cap, std::int64_t batches,
                                     std::int64_t c, std::int32_t* __restrict__ winner) {
  using A = compute_t<T>;
  LATTICE_GRID_LOOP(idx, batches * c) {
    const std::int64_t b = idx / c, j = idx % c;
    const std::int64_t begin = lower_bound(keys, cap, static_cast<std::uint32_t>(b));
    const std::int64_t end = lower_bound(keys, cap, static_cast<std::uint32_t>(b + 1));
    std::int32_t best = -1, nan_row = -1;
    A best_v = A(0);
    for (std::int64_t q = begin; q < end && nan_row < 0; ++q) {
      const std::int32_t r = rows[q];
      const A v = load(x[static_cast<std::int64_t>(r) * c + j]);
      if (isnan(v)) {
        nan_row = r;
      } else if (best < 0 || v > best_v) {
        best_v = v;
        best = r;
      }
    }
    winner[idx] = nan_row >= 0 ? nan_row : best;
  }
}

template <class T>
__global__ void global_gather_kernel(const std::int32_t* __restrict__ coords, const std::int32_t* rows_ptr,
                                     std::int64_t cap, const T* __restrict__ dy, std::int64_t batches, std::int64_t c,
                                     const std::uint32_t* __restrict__ keys, const std::int32_t* __restrict__ winner,
                                     int mode, T* __restrict__ dx) {
  using A = compute_t<T>;
  const std::int64_t n = read_count(rows_ptr, cap);
  LATTICE_GRID_LOOP(idx, cap * c) {
    const std::int64_t r = idx / c, j = idx % c;
    A d = A(0);
    const std::int32_t b = r < n ? coords[4 * r] : -1;
    if (b >= 0 && b < batches) {
      const A v = load(dy[static_cast<std::int64_t>(b) * c + j]);
      if (mode == static_cast<int>(ops::PoolMode::sum)) {
        d = v;
      } else if (mode == static_cast<int>(ops::PoolMode::avg)) {
        const std::int64_t count = lower_bound(keys, cap, static_cast<std::uint32_t>(b + 1)) -
                                   lower_bound(keys, cap, static_cast<std::uint32_t>(b));
        d = div_rn(v, static_cast<A>(count));
      } else if (winner[static_cast<std::int64_t>(b) * c + j] == r) {
        d = v;
      }
    }
    dx[idx] = store<T>(d);
  }
}

// ---- trilinear upsampling ------------------------------------------------------------------

struct Ratio {
  int r[3];
  int coarse_stride[3];
  int fine_stride[3];
};

// The forward's axis rule (resample.cu): floor(f / r) and, when r does not
// divide f, its successor; weights (r - d) / r and d / r.
template <class A>
__device__ __forceinline__ int axis_candidates(long long f, int r, long long u[2], A w[2]) {
  const long long lo = detail::floor_div(static_cast<std::int32_t>(f), r);
  const long long d = f - lo * r;
  u[0] = lo;
  w[0] = div_rn(static_cast<A>(r - d), static_cast<A>(r));
  if (d == 0) return 1;
  u[1] = lo + 1;
  w[1] = div_rn(static_cast<A>(d), static_cast<A>(r));
  return 2;
}

// One thread per active coarse row: candidates outer (the CPU's order), the
// row's channels inner, accumulated in the thread's own rows of `acc` (compute
// type), so each candidate's hash lookups and weights are computed once.
template <class T>
__global__ void upsample_backward_kernel(const std::int32_t* __restrict__ coarse, const std::int32_t* coarse_rows,
                                         std::int64_t coarse_cap, Ratio g, ConstHashView ctable, ConstHashView ftable,
                                         const T* __restrict__ dy, std::int64_t c, compute_t<T>* __restrict__ acc,
                                         T* __restrict__ dx) {
  using A = compute_t<T>;
  const std::int64_t n = read_count(coarse_rows, coarse_cap);
  LATTICE_GRID_LOOP(row, n) {
    const std::int32_t* u = coarse + 4 * row;
    const long long ul[3] = {u[1] / g.coarse_stride[0], u[2] / g.coarse_stride[1], u[3] / g.coarse_stride[2]};
    A* a_row = acc + row * c;
    for (std::int64_t j = 0; j < c; ++j) a_row[j] = A(0);
    for (int ox = 1 - g.r[0]; ox < g.r[0]; ++ox) {
      for (int oy = 1 - g.r[1]; oy < g.r[1]; ++oy) {
        for (int oz = 1 - g.r[2]; oz < g.r[2]; ++oz) {
          const long long f[3] = {ul[0] * g.r[0] + ox, ul[1] * g.r[1] + oy, ul[2] * g.r[2] + oz};
          const std::int32_t fr = device::lookup(ftable, u[0], f[0], f[1], f[2]);
          if (fr < 0) continue;
          // The forward's normaliser W(f) and this row's weight in it, in the forward's order.
          long long cx[2], cy[2], cz[2];
          A wx[2], wy[2], wz[2];
          const int nx = axis_candidates<A>(f[0], g.r[0], cx, wx);
          const int ny = axis_candidates<A>(f[1], g.r[1], cy, wy);
          const int nz = axis_candidates<A>(f[2], g.r[2], cz, wz);
          A total = A(0), w_self = A(0);
          for (int a = 0; a < nx; ++a) {
            for (int b = 0; b < ny; ++b) {
              for (int d = 0; d < nz; ++d) {
                if (device::lookup(ctable, u[0], cx[a], cy[b], cz[d]) < 0) continue;
                const A w = mul_rn(mul_rn(wx[a], wy[b]), wz[d]);
                total = add_rn(total, w);
                if (cx[a] == ul[0] && cy[b] == ul[1] && cz[d] == ul[2]) w_self = w;
              }
            }
          }
          if (!(total > A(0))) continue;
          const T* g_row = dy + static_cast<std::int64_t>(fr) * c;
          for (std::int64_t j = 0; j < c; ++j) {
            a_row[j] = add_rn(a_row[j], div_rn(mul_rn(w_self, load(g_row[j])), total));
          }
        }
      }
    }
    T* d_row = dx + row * c;
    for (std::int64_t j = 0; j < c; ++j) d_row[j] = store<T>(a_row[j]);
  }
}

// ---- devoxelize --------------------------------------------------------------------------

template <class P>
struct AxisParams {
  P origin[3];
  P denom[3];  // stride * voxel_size, rounded once in P on the host (as the forward)
};

// Entry 8 i + k: the k-th corner of point i (nearest: k = 0 only). key = its
// voxel row (k_absent when the corner is absent or the point is invalid);
// coef = w_k / total in the compute type A, exactly the CPU's value.
template <class A, class P>
__global__ void corners_kernel(const P* __restrict__ pts, std::int64_t n, AxisParams<P> ap, ConstHashView table,
                               const std::int32_t* __restrict__ map, const std::int32_t* __restrict__ batch,
                               const std::int32_t* rows_ptr, std::int64_t rows_cap, bool linear,
                               std::uint32_t* __restrict__ keys, std::int32_t* __restrict__ items,
                               A* __restrict__ coef) {
  using W = std::conditional_t<std::is_same_v<P, double>, double, float>;
  const std::int64_t m = read_count(rows_ptr, rows_cap);
  LATTICE_GRID_LOOP(i, n) {
    std::uint32_t* key = keys + 8 * i;
    A* cf = coef + 8 * i;
    for (int k = 0; k < 8; ++k) {
      key[k] = k_absent;
      cf[k] = A(0);
      items[8 * i + k] = static_cast<std::int32_t>(8 * i + k);
    }
    const std::int32_t b = batch != nullptr ? batch[i] : 0;
    P p[3];
    bool ok = b >= 0 && b <= lattice::detail::k_batch_max;
    for (int a = 0; a < 3; ++a) {
      p[a] = pts[3 * i + a];
      ok = ok && isfinite(p[a]);
    }
    if (!ok) continue;  // the forward, run by the front end, reports these
    if (!linear) {
      std::int32_t row = -1;
      if (map != nullptr) {
        row = map[i];
      } else {
        long long cell[3];
        bool inside = true;
        for (int a = 0; a < 3; ++a) {
          const P f = floor(div_rn(sub_rn(p[a], ap.origin[a]), ap.denom[a]));
          inside = inside && fabs(static_cast<double>(f)) < k_cell_limit;
          cell[a] = inside ? static_cast<long long>(f) : 0;
        }
        if (inside) row = device::lookup(table, b, cell[0], cell[1], cell[2]);
      }
      if (row >= 0 && row < m) {
        key[0] = static_cast<std::uint32_t>(row);
        cf[0] = A(1);
      }
      continue;
    }
    long long lo[3];
    W w_lo[3], w_hi[3];
    bool inside = true;
    for (int a = 0; a < 3; ++a) {
      const double t = __dsub_rn(static_cast<double>(div_rn(sub_rn(p[a], ap.origin[a]), ap.denom[a])), 0.5);
      const double f = floor(t);
      inside = inside && fabs(f) < k_cell_limit;
      lo[a] = inside ? static_cast<long long>(f) : 0;
      w_lo[a] = static_cast<W>(__dsub_rn(__dadd_rn(f, 1.0), t));
      w_hi[a] = static_cast<W>(__dsub_rn(t, f));
    }
    std::int32_t rows[8];
    W weights[8];
    W total = 0;
    for (int k = 0; k < 8; ++k) {
      const int d0 = (k >> 2) & 1, d1 = (k >> 1) & 1, d2 = k & 1;
      rows[k] = inside ? device::lookup(table, b, lo[0] + d0, lo[1] + d1, lo[2] + d2) : -1;
      W w = 1;
      w = mul_rn(w, d0 ? w_hi[0] : w_lo[0]);
      w = mul_rn(w, d1 ? w_hi[1] : w_lo[1]);
      w = mul_rn(w, d2 ? w_hi[2] : w_lo[2]);
      weights[k] = rows[k] >= 0 ? w : W(0);
      total = add_rn(total, weights[k]);
    }
    if (!(total > W(0))) continue;
    for (int k = 0; k < 8; ++k) {
      if (rows[k] < 0) continue;
      key[k] = static_cast<std::uint32_t>(rows[k]);
      cf[k] = div_rn(static_cast<A>(weights[k]), static_cast<A>(total));
    }
  }
}

// dx[v][j] = sum over v's sorted entries (point order, then corner order) of coef * dy[point][j].
template <class T>
__global__ void devoxelize_gather_kernel(const std::uint32_t* __restrict__ keys, const std::int32_t* __restrict__ items,
                                         std::int64_t entries, const compute_t<T>* __restrict__ coef,
                                         const T* __restrict__ dy, const std::int32_t* rows_ptr, std::int64_t cap,
                                         std::int64_t c, T* __restrict__ dx) {
  using A = compute_t<T>;
  const std::int64_t m = read_count(rows_ptr, cap);
  LATTICE_GRID_LOOP(idx, cap * c) {
    const std::int64_t v = idx / c, j = idx % c;
    A acc = A(0);
    if (v < m) {
      const std::int64_t begin = lower_bound(keys, entries, static_cast<std::uint32_t>(v));
      const std::int64_t end = lower_bound(keys, entries, static_cast<std::uint32_t>(v + 1));
      for (std::int64_t q = begin; q < end; ++q) {
        const std::int32_t e = items[q];
        acc = add_rn(acc, mul_rn(coef[e], load(dy[static_cast<std::int64_t>(e / 8) * c + j])));
      }
    }
    dx[idx] = store<T>(acc);
  }
}

// ---- voxelize ------------------------------------------------------------------------------

__global__ void voxel_keys_kernel(const std::int32_t* __restrict__ inverse, std::int64_t n, const std::int32_t* m_ptr,
                                  std::int64_t m_cap, std::uint32_t* __restrict__ keys,
                                  std::int32_t* __restrict__ items) {
  const std::int64_t m = read_count(m_ptr, m_cap);
  LATTICE_GRID_LOOP(i, n) {
    const std::int32_t v = inverse[i];
    keys[i] = v >= 0 && v < m ? static_cast<std::uint32_t>(v) : k_absent;
    items[i] = static_cast<std::int32_t>(i);
  }
}

// The forward's max (std::max from -inf: strictly greater wins, NaN never
// does) and its first point, per (voxel, channel).
template <class T>
__global__ void voxel_winner_kernel(const T* __restrict__ x, const std::uint32_t* __restrict__ keys,
                                    const std::int32_t* __restrict__ items, std::int64_t n, const std::int32_t* m_ptr,
                                    std::int64_t m_cap, std::int64_t c, std::int32_t* __restrict__ winner) {
  using A = compute_t<T>;
  const std::int64_t m = read_count(m_ptr, m_cap);
  LATTICE_GRID_LOOP(idx, m * c) {
    const std::int64_t v = idx / c, j = idx % c;
    const std::int64_t begin = lower_bound(keys, n, static_cast<std::uint32_t>(v));
    const std::int64_t end = lower_bound(keys, n, static_cast<std::uint32_t>(v + 1));
    A best = -std::numeric_limits<A>::infinity();
    std::int32_t w = -1;
    for (std::int64_t q = begin; q < end; ++q) {
      const std::int32_t i = items[q];
      const A value = load(x[static_cast<std::int64_t>(i) * c + j]);
      if (best < value || (w < 0 && value == best)) {
        best = value;
        w = i;
      }
    }
    winner[idx] = w;
  }
}

template <class T>
__global__ void voxel_gather_kernel(const std::int32_t* __restrict__ inverse, const std::int32_t* __restrict__ counts,
                                    const std::int32_t* m_ptr, std::int64_t m_cap, const T* __restrict__ dy,
                                    const std::int32_t* __restrict__ winner, std::int64_t n, std::int64_t c,
                                    int reduction, T* __restrict__ dfeats) {
  using A = compute_t<T>;
  const std::int64_t m = read_count(m_ptr, m_cap);
  LATTICE_GRID_LOOP(idx, n * c) {
    const std::int64_t i = idx / c, j = idx % c;
    const std::int32_t v = inverse[i];
    A r = A(0);
    if (v >= 0 && v < m) {
      const A d = load(dy[static_cast<std::int64_t>(v) * c + j]);
      if (reduction == static_cast<int>(ops::Reduction::mean)) {
        r = mul_rn(d, div_rn(A(1), static_cast<A>(counts[v])));
      } else if (reduction == static_cast<int>(ops::Reduction::sum)) {
        r = d;
      } else if (winner[static_cast<std::int64_t>(v) * c + j] == i) {
        r = d;
      }
    }
    dfeats[idx] = store<T>(r);
  }
}

}  // namespace

void pool_backward(const Relation& rel, const Array& feats, const Array& dy, ops::PoolMode mode, Array& dx) {
  const cudaStream_t stream = prepare(feats.device());
  const auto output = rel.output();
  const std::int64_t out_cap = output->capacity(), n_in = feats.dim(0), c = feats.dim(1);
  const OutputCsr& ocsr = rel.output_csr();
  const InputCsr& icsr = rel.input_csr();
  visit_float_device(feats.dtype(), [&]<class T>() {
    if (n_in * c == 0) return;
    Array winner;
    if (mode == ops::PoolMode::max && out_cap * c > 0) {
      winner = Array::empty(Shape{out_cap, c}, DType::i32, feats.device());
      winner_kernel<T><<<grid_for(out_cap * c, k_threads), k_threads, 0, stream>>>(
          ptr<const T>(feats), ptr<const std::int32_t>(ocsr.row_offsets), ptr<const std::int32_t>(rel.in_rows()),
          ptr<const std::int32_t>(output->active_rows()), out_cap, c, ptr<std::int32_t>(winner));
      LATTICE_CUDA_LAUNCH_CHECK();
    }
    // Input rows past the active count have empty CSR ranges: they get 0.
    pool_gather_kernel<T><<<grid_for(n_in * c, k_threads), k_threads, 0, stream>>>(
        ptr<const T>(dy), ptr<const std::int32_t>(icsr.offsets), ptr<const std::int32_t>(icsr.edge_ids),
        ptr<const std::int32_t>(rel.out_rows()), ptr<const std::int32_t>(ocsr.row_offsets),
        winner.defined() ? ptr<const std::int32_t>(winner) : nullptr, n_in, c, static_cast<int>(mode), ptr<T>(dx));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void global_pool_backward(const CoordinateSet& set, const Array& feats, const Array& dy, ops::PoolMode mode, Array& dx,
                          const char* op) {
  const Device dev = feats.device();
  const cudaStream_t stream = prepare(dev);
  const std::int64_t cap = set.capacity(), c = feats.dim(1), batches = dy.dim(0);
  if (cap * c == 0) return;
  Array keys = Array::empty(Shape{cap}, DType::u32, dev);
  Array items = Array::empty(Shape{cap}, DType::i32, dev);
  batch_keys_kernel<<<grid_for(cap, k_threads), k_threads, 0, stream>>>(
      ptr<const std::int32_t>(set.coords()), ptr<const std::int32_t>(set.active_rows()), cap, batches,
      ptr<std::uint32_t>(keys), ptr<std::int32_t>(items), error_slot(dev.index), op_id(op));
  LATTICE_CUDA_LAUNCH_CHECK();
  Array sorted_keys, rows;
  sort_pairs(keys, items, sorted_keys, rows);  // stable: each batch item's rows stay in row order
  visit_float_device(feats.dtype(), [&]<class T>() {
    Array winner;
    if (mode == ops::PoolMode::max) {
      winner = Array::empty(Shape{batches, c}, DType::i32, dev);
      global_winner_kernel<T><<<grid_for(batches * c, k_threads), k_threads, 0, stream>>>(
          ptr<const T>(feats), ptr<const std::uint32_t>(sorted_keys), ptr<const std::int32_t>(rows), cap, batches, c,
          ptr<std::int32_t>(winner));
      LATTICE_CUDA_LAUNCH_CHECK();
    }
    global_gather_kernel<T><<<grid_for(cap * c, k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(set.coords()), ptr<const std::int32_t>(set.active_rows()), cap, ptr<const T>(dy),
        batches, c, ptr<const std::uint32_t>(sorted_keys), winner.defined() ? ptr<const std::int32_t>(winner) : nullptr,
        static_cast<int>(mode), ptr<T>(dx));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void trilinear_upsample_backward(const CoordinateSet& coarse, const CoordinateSet& fine, const Array& dy, Int3 ratio,
                                 Array& dx, const char* op) {
  const CudaCoordIndex& cindex = coord_index(coarse, op);  // enqueue the builds on first use
  const CudaCoordIndex& findex = coord_index(fine, op);
  const cudaStream_t stream = prepare(dy.device());
  const std::int64_t cap = coarse.capacity(), c = dy.dim(1);
  const Int3 cs = coarse.stride(), fs = fine.stride();
  const Ratio g{{ratio.x, ratio.y, ratio.z}, {cs.x, cs.y, cs.z}, {fs.x, fs.y, fs.z}};
  visit_float_device(dy.dtype(), [&]<class T>() {
    zero<T>(dx, stream);  // rows past the coarse count stay 0
    if (cap * c == 0) return;
    using A = compute_t<T>;
    Array acc = Array::empty(Shape{cap, c}, std::is_same_v<A, double> ? DType::f64 : DType::f32, dy.device());
    upsample_backward_kernel<T><<<grid_for(cap, k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(coarse.coords()), ptr<const std::int32_t>(coarse.active_rows()), cap, g,
        view_of(cindex), view_of(findex), ptr<const T>(dy), c, ptr<A>(acc), ptr<T>(dx));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void devoxelize_backward(const CoordinateSet& set, const Array& points, const Array& dy,
                         const std::optional<Array>& map, const std::optional<Array>& batch_indices,
                         const ops::DevoxelizeParams& params, Array& dx) {
  constexpr const char* op = "devoxelize_backward";
  const bool linear = params.interpolation == ops::Interpolation::linear;
  const CudaCoordIndex* index = (linear || !map) ? &coord_index(set, op) : nullptr;
  const Device dev = dy.device();
  const cudaStream_t stream = prepare(dev);
  const std::int64_t n = dy.dim(0), c = dy.dim(1), cap = set.capacity(), entries = 8 * n;
  const ConstHashView table = index != nullptr ? view_of(*index) : ConstHashView{nullptr, nullptr, 0};
  visit_float_device(dy.dtype(), [&]<class T>() {
    using A = compute_t<T>;
    if (n == 0 || c == 0) {
      zero<T>(dx, stream);
      return;
    }
    Array keys = Array::empty(Shape{entries}, DType::u32, dev);
    Array items = Array::empty(Shape{entries}, DType::i32, dev);
    Array coef = Array::empty(Shape{entries}, std::is_same_v<A, double> ? DType::f64 : DType::f32, dev);
    const auto* mp = map ? ptr<const std::int32_t>(*map) : nullptr;
    const auto* bp = batch_indices ? ptr<const std::int32_t>(*batch_indices) : nullptr;
    const auto* rows_ptr = ptr<const std::int32_t>(set.active_rows());
    if (points.dtype() == DType::f32) {
      AxisParams<float> ap{};
      for (int a = 0; a < 3; ++a) {
        ap.origin[a] = static_cast<float>(params.origin[a]);
        ap.denom[a] = static_cast<float>(set.stride()[a]) * static_cast<float>(params.voxel_size[a]);
      }
      corners_kernel<A, float><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
          ptr<const float>(points), n, ap, table, mp, bp, rows_ptr, cap, linear, ptr<std::uint32_t>(keys),
          ptr<std::int32_t>(items), ptr<A>(coef));
    } else {
      AxisParams<double> ap{};
      for (int a = 0; a < 3; ++a) {
        ap.origin[a] = params.origin[a];
        ap.denom[a] = static_cast<double>(set.stride()[a]) * params.voxel_size[a];
      }
      corners_kernel<A, double><<<grid_for(n, k_threads), k_threads, 0, stream>>>(
          ptr<const double>(points), n, ap, table, mp, bp, rows_ptr, cap, linear, ptr<std::uint32_t>(keys),
          ptr<std::int32_t>(items), ptr<A>(coef));
    }
    LATTICE_CUDA_LAUNCH_CHECK();
    Array sorted_keys, sorted_items;
    sort_pairs(keys, items, sorted_keys, sorted_items);  // stable: point order, then corner order
    if (cap * c == 0) return;
    devoxelize_gather_kernel<T><<<grid_for(cap * c, k_threads), k_threads, 0, stream>>>(
        ptr<const std::uint32_t>(sorted_keys), ptr<const std::int32_t>(sorted_items), entries, ptr<const A>(coef),
        ptr<const T>(dy), rows_ptr, cap, c, ptr<T>(dx));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void voxelize_backward(const Array& inverse_rows, const Array& counts, const Array& feats, const Array& dy,
                       const Array& voxel_rows, ops::Reduction reduction, Array& dfeats) {
  const Device dev = feats.device();
  const cudaStream_t stream = prepare(dev);
  const std::int64_t n = feats.dim(0), c = feats.dim(1), m_cap = dy.dim(0);
  if (n * c == 0) return;
  const auto* m_ptr = ptr<const std::int32_t>(voxel_rows);
  visit_float_device(feats.dtype(), [&]<class T>() {
    Array winner;
    if (reduction == ops::Reduction::max && m_cap > 0) {
      Array keys = Array::empty(Shape{n}, DType::u32, dev);
      Array items = Array::empty(Shape{n}, DType::i32, dev);
      voxel_keys_kernel<<<grid_for(n, k_threads), k_threads, 0, stream>>>(
          ptr<const std::int32_t>(inverse_rows), n, m_ptr, m_cap, ptr<std::uint32_t>(keys), ptr<std::int32_t>(items));
      LATTICE_CUDA_LAUNCH_CHECK();
      Array sorted_keys, sorted_items;
      sort_pairs(keys, items, sorted_keys, sorted_items);  // stable: each voxel's points in point order
      winner = Array::empty(Shape{m_cap, c}, DType::i32, dev);
      voxel_winner_kernel<T><<<grid_for(m_cap * c, k_threads), k_threads, 0, stream>>>(
          ptr<const T>(feats), ptr<const std::uint32_t>(sorted_keys), ptr<const std::int32_t>(sorted_items), n, m_ptr,
          m_cap, c, ptr<std::int32_t>(winner));
      LATTICE_CUDA_LAUNCH_CHECK();
    }
    voxel_gather_kernel<T><<<grid_for(n * c, k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(inverse_rows), ptr<const std::int32_t>(counts), m_ptr, m_cap, ptr<const T>(dy),
        winner.defined() ? ptr<const std::int32_t>(winner) : nullptr, n, c, static_cast<int>(reduction),
        ptr<T>(dfeats));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace lattice::cuda
